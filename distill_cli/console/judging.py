"""The `--judge` choice that `gate` and `drift` share, derived from the judges the library has.

Not in common.py: `record` imports common and must not load the judges (tests/test_layout.py).
"""

from __future__ import annotations

from enum import Enum

from distill_cli.judges import JUDGES

# A click choice: a bad --judge is a usage error (exit 2) before anything runs.
JudgeName = Enum("JudgeName", {name: name for name in ("auto", *JUDGES)}, type=str)
