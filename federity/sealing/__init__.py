"""Private repositories: weights encrypted to the repository's members.

- :mod:`federity.sealing.keys`: a Solana wallet as an X25519 key; one key sealed to many wallets.
- :mod:`federity.sealing.keyring`: the repository's group key (``versions``) in epochs, each sealed
  to its group's wallets; membership changes add batches or start epochs.
- :mod:`federity.sealing.objects`: a sealed object, a file encrypted in chunks (ChaCha20-Poly1305, STREAM) under
  a fresh data key wrapped in its header, read back a range at a time.
"""
