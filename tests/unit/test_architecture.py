"""The layers of docs/architecture.md hold: the import-linter contracts, and the library loads without Prefect."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold() -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


def test_the_library_the_demo_and_the_cli_load_without_prefect() -> None:
    script = textwrap.dedent("""
        import json, sys
        import federity.demo, federity.repo.verify, federity.repo.train, federity.rounds, federity.site
        import federity.cli
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "flows", "tasks", "agents",
                                                                          "torch"})))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
