"""Zero-knowledge proofs of training (ezkl, Halo2 over KZG). ``docs/proofs.md`` states and defends the statement.

In short: the contributor trains the model's head (its last linear layer: the whole model for logistic
regression) by SGD *inside the circuit's fixed point*, hashes every step's weights and salted batch with Poseidon,
commits to that hash chain, and proves the steps that sha256(commitment, round nonce) draws. A verifier rebuilds
the circuit, the keys and the chain's two ends from the repository, and checks each audited step's proof.

Modules: :mod:`~federity.proofs.circuit` (the ONNX step and its cached keys), :mod:`~federity.proofs.srs` (the
repository's SRS), :mod:`~federity.proofs.chain` (proved training, commitment, challenge),
:mod:`~federity.proofs.prove` (at the edge) and :mod:`~federity.proofs.verify` (anywhere, offline).
"""
