"""What a drift run returns: each check's outcome and the run's result, serialised as drift-result/1.

Plain data: no store, no network, no numbers computed here beyond the result's own summary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from distill_cli.serving import DemotionInfo

RESULT_SCHEMA = "drift-result/1"
CHECKS = ("agreement", "input", "decline", "output")


@dataclass
class Check:
    """One check of a run: `status` is ok, drifted or skipped; `message` says what it saw and why."""

    name: str
    status: str
    message: str
    statistic: float | None = None
    threshold: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.status == "drifted"


@dataclass
class DriftResult:
    """A drift run: what each check saw, whether the student drifted, and the row appended to the log."""

    student: str
    student_kind: str
    task: str
    window_start: datetime
    window_end: datetime
    since: str
    calls: int  # calls of the task in the window (shadow rows not counted)
    served: int  # calls the student was asked (answered + declined)
    answered: int
    declined: int
    decline_rate: float | None
    pairs: int  # student answers checked against the teacher (shadow + live)
    agreeing: int
    judge_errors: int
    declines_counted: int  # declines weighed in at the pairs' sampling rate (end-to-end agreement)
    agreement: float | None
    lower_bound: float | None
    upper_bound: float | None
    confidence: float
    evidence: float | None  # the sequential detector's statistic after this run
    evidence_threshold: float
    detector_runs: int  # runs with pairs folded into the detector since it last restarted
    input_shift: float | None
    input_shift_threshold: float | None
    output_shift: float | None
    checks: list[Check]
    drifted: bool
    demoted: bool
    demotion: DemotionInfo | None
    newly_demoted: bool
    cleared: DemotionInfo | None  # a demotion this run found lifted (and removed)
    min_agreement: float
    arl: float
    judge: str | None
    judge_reason: str | None
    live_calls: int
    teacher_spent_usd: float
    judge_spent_usd: float
    spent_usd: float
    log: str | None
    log_rows: int
    notes: list[str] = field(default_factory=list)
    disagreements: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "demoted" if self.demoted else "drifted" if self.drifted else "ok"

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.message}" for c in self.checks if c.drifted]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        data = {"schema": RESULT_SCHEMA, "status": self.status, "reasons": self.reasons}
        data.update(asdict(self))
        for key in ("window_start", "window_end"):
            data[key] = getattr(self, key).isoformat()
        return data
