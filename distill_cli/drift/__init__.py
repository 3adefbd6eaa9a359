"""Drift: is a student that passed its gate still fit to serve? (the package's modules: see run.py for now)."""

from distill_cli.drift.run import (
    CHECKS,
    RESULT_SCHEMA,
    AgreementDetector,
    Check,
    DriftResult,
    Teacher,
    append_log,
    fold_evidence,
    input_shift,
    is_demoted,
    output_shift,
    read_log,
    run_drift,
    window_start,
)

__all__ = [
    "CHECKS",
    "RESULT_SCHEMA",
    "AgreementDetector",
    "Check",
    "DriftResult",
    "Teacher",
    "append_log",
    "fold_evidence",
    "input_shift",
    "is_demoted",
    "output_shift",
    "read_log",
    "run_drift",
    "window_start",
]
