"""The layout rules the code keeps: the recording proxy depends on nothing analytic."""

from __future__ import annotations

import json
import subprocess
import sys

ANALYTIC = ("distill_cli.drift", "distill_cli.gate", "distill_cli.judges", "distill_cli.report", "distill_cli.stats")


def test_record_without_a_student_loads_nothing_analytic():
    """`distill record` loads the router (for --student) but neither drift, gate, judges, report nor DuckDB."""
    code = (
        "import sys, json\n"
        "from distill_cli.console import record\n"
        "import distill_cli.recorder\n"
        "from distill_cli.recorder import router\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "distill_cli.serving" in loaded and "distill_cli.recorder.router" in loaded
    assert [m for m in loaded if m.startswith(ANALYTIC)] == []
    assert [m for m in loaded if m.split(".")[0] in ("duckdb", "sklearn", "scipy", "anthropic", "openai")] == []


def test_the_import_contracts_hold():
    """pyproject.toml's import-linter contracts: the recorder imports nothing analytic, the library no CLI, no cycles."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
