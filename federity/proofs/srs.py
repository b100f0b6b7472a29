"""The structured reference string (SRS) a repository's KZG proofs use.

Provers and verifiers must use the same SRS, so it travels with the repository: ``model/proof-srs.bin``, stored by
DVC from the genesis commit on, its sha256 and origin recorded in ``federity.yaml`` (``proofs.srs``).

Two origins:

- ``generated-offline`` (the default, **insecure**): ``ezkl.gen_srs`` draws a fresh secret on the owner's machine.
  Whoever knows that secret could forge proofs; nobody can check that it was thrown away. Every output that
  mentions a proof says so.
- ``imported``: a public powers-of-tau file (e.g. ezkl's ``kzg<k>.srs`` from the perpetual powers of tau ceremony),
  imported with ``federity init --proofs --srs FILE --srs-sha256 HEX``; the hash is checked before the file is used.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from federity.errors import ProofError

SRS_FILE = "proof-srs.bin"
GENERATED = "generated-offline"
IMPORTED = "imported"
INSECURE_NOTE = "INSECURE SRS generated offline: whoever generated it could forge proofs"


def srs_logrows(data: bytes) -> int:
    """The size (log2 of rows) an SRS file supports: its first four bytes, little-endian."""
    if len(data) < 4:
        raise ProofError("the SRS file is empty or truncated", "import a complete powers-of-tau file")
    return struct.unpack("<I", data[:4])[0]


def generate(logrows: int, path: Path) -> dict[str, Any]:
    """Generate an insecure SRS for circuits of up to ``2**logrows`` rows at ``path``; return its record."""
    from federity.proofs.circuit import call_ezkl

    call_ezkl("gen_srs", str(path), logrows)
    return record(path.read_bytes(), GENERATED)


def import_file(source: Path, sha256: str, logrows: int, path: Path) -> dict[str, Any]:
    """Copy a public SRS file to ``path`` after checking its sha256 and that it is large enough."""
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise ProofError(f"cannot read the SRS file {source}: {exc.strerror}", "check the path") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.strip().lower():
        raise ProofError(f"the SRS file {source} has sha256 {actual}, not the expected {sha256}",
                         "download it again from its publisher and compare the published hash")
    if srs_logrows(data) < logrows:
        raise ProofError(f"the SRS file supports 2^{srs_logrows(data)} rows; the circuit needs 2^{logrows}",
                         f"import kzg{logrows}.srs or larger")
    path.write_bytes(data)
    return record(data, IMPORTED)


def record(data: bytes, source: str) -> dict[str, Any]:
    """What ``federity.yaml`` records about an SRS."""
    return {"file": SRS_FILE, "sha256": hashlib.sha256(data).hexdigest(), "logrows": srs_logrows(data),
            "source": source}


def describe(srs: dict[str, Any]) -> str:
    """One line on the SRS's trust, for every output that mentions a proof."""
    if srs.get("source") == IMPORTED:
        return f"imported public SRS (sha256 {srs['sha256'][:16]}…, 2^{srs['logrows']} rows)"
    return INSECURE_NOTE


def local_copy(srs: dict[str, Any], read: Callable[[], bytes], commit: str) -> Path:
    """The repository's SRS (recorded as ``srs`` in ``federity.yaml``) as a file in the cache (ezkl reads paths).
    ``read`` returns the SRS bytes the repository stores at ``commit``; it is called only when the cache holds no
    good copy. Both the cached copy and the repository's bytes are checked against the recorded sha256."""
    from federity.proofs.circuit import cache_root

    path = cache_root().parent / "srs" / f"{srs['sha256']}.srs"
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == srs["sha256"]:
        return path
    data = read()
    if hashlib.sha256(data).hexdigest() != srs["sha256"]:
        raise ProofError(f"the SRS at commit {commit[:12]} does not match the sha256 in federity.yaml",
                         "restore model/proof-srs.bin from the genesis commit")
    path.parent.mkdir(parents=True, exist_ok=True)
    # a staging file of its own, so processes copying the same SRS at once never read one another's half
    handle, staging = tempfile.mkstemp(prefix=".staging-", dir=path.parent)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(staging, path)
    return path
