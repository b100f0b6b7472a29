"""The README's `make demo` walk-through, run for real with the installed `federity` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_walkthrough_runs_and_catches_both_tamperings(tmp_path: Path) -> None:
    env = {**os.environ, "WALKTHROUGH_DIR": str(tmp_path / "wt"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(ROOT / "docs" / "walkthrough.sh")], env=env, capture_output=True,
                            text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "5 commits checked: ok" in result.stdout
    assert result.stdout.count("^ verify failed as it must") == 2
    assert "weights: the weights object of commit" in result.stdout
    assert "signature: the signature does not verify" in result.stdout
