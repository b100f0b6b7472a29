"""Provenance on Solana: every commit recorded as a Token-2022 NFT.

- :mod:`federity.chain.nft` — mint a commit's NFT (idempotent), read it back, transfer it;
- :mod:`federity.chain.ledger` — the ledger interface and :func:`~federity.chain.ledger.open_ledger`;
- :mod:`federity.chain.embedded` and :mod:`federity.chain.rpc` — the two ledger plugins;
- :mod:`federity.chain.token2022`, :mod:`federity.chain.token_metadata` — instruction builders and account parsers;
- :mod:`federity.chain.transactions` — the 1,232-byte limit and splitting.

``docs/nft.md`` says what an NFT records, what it costs and what it proves.
"""
