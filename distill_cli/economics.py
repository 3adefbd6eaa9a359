"""The money rules every stage shares: routed cost, cost reduction, the spend cap.

A student is asked first and the teacher answers what it declines, so a call
costs the student's price plus (1 - coverage) of the teacher's ("routed cost"),
and distillation is worth `teacher / routed` times less ("cost reduction").
`gate` certifies that figure, `report` and `build-student` estimate it, and all
of them write it and read it the same way through this module.

The spend cap (`--max-spend`) is one class for the gate, drift and the LLM
student builder. This module never prints, reads no file and calls no provider.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal

from distill_cli.errors import InputError, ProviderError

# ---- routed cost and cost reduction ----------------------------------------------------------------------------


def routed_cost(student_cost_per_call: float | None, teacher_cost_per_call: float | None, coverage: float) -> float | None:
    """Cost per call when the student is asked first and the teacher answers what it does not:
    student + (1 - coverage) x teacher. None when either cost is unknown."""
    if student_cost_per_call is None or teacher_cost_per_call is None:
        return None
    return student_cost_per_call + (1.0 - coverage) * teacher_cost_per_call


def cost_reduction(teacher_cost_per_call: float | None, routed_cost_per_call: float | None) -> float | None:
    """How many times cheaper routing is than the teacher alone: teacher / routed.

    `math.inf` when routing costs nothing (a local student answering every call),
    None when either cost is unknown.
    """
    if teacher_cost_per_call is None or routed_cost_per_call is None:
        return None
    if routed_cost_per_call <= 0:
        return math.inf if teacher_cost_per_call > 0 else 1.0
    return teacher_cost_per_call / routed_cost_per_call


def reduction_at(coverage: float, student_cost_per_call: float = 0.0, teacher_cost_per_call: float = 1.0) -> float:
    """The cost reduction of a student answering `coverage` of the calls at its cost (a free one by default)."""
    return cost_reduction(teacher_cost_per_call, routed_cost(student_cost_per_call, teacher_cost_per_call, coverage))


def expected_reduction(coverage: float, student_cost: float, teacher_cost: float | None) -> float | None:
    """A builder's measured estimate, rounded to 2 places: None without a priced teacher call or when routing is free."""
    if not teacher_cost:
        return None
    routed = routed_cost(student_cost, teacher_cost, coverage)
    return round(cost_reduction(teacher_cost, routed), 2) if routed > 0 else None


# ---- a reduction as text and as JSON ---------------------------------------------------------------------------


def format_reduction(value: float | None) -> str:
    """`14.2x`, `inf` (free) or `unknown`: how a cost reduction reads in text and in JSON.

    One decimal, or as many more as keep the figure on its side of 1: a reduction
    of 1.015 reads `1.02x` and one of 0.96 `0.96x`, never `1.0x` ("no saving").
    """
    if value is None:
        return "unknown"
    if math.isinf(value):
        return "inf"
    text = f"{value:.1f}"
    if text != "1.0" or value == 1.0:
        return f"{text}x"
    exact = Decimal(repr(value))  # the shortest decimal that is this float: 1.015, not 1.01499...
    for digits in range(2, 18):
        shown = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)
        if shown != 1:
            return f"{shown}x"
    return f"{exact}x"


def reduction_text(x: float) -> str:
    """A known reduction in a sentence: `14.2x`, `1,250x` from 100 up, `inf (free)`."""
    if math.isinf(x):
        return "inf (free)"
    return format_reduction(x) if x < 100 else f"{x:,.0f}x"


def as_reduction(value) -> float | None:
    """A cost reduction as a number: 14.2, "14.2x", or "inf" (a free student; JSON has no infinity)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if not math.isnan(value) else None
    if isinstance(value, str):
        if value.strip().lower() in ("inf", "infinity"):
            return math.inf
        m = re.match(r"\s*([\d.]+)\s*x?", value)
        return float(m.group(1)) if m else None
    return None


def json_reduction(x: float | None):
    """A reduction as JSON can hold it: rounded, or "inf" as the gate writes it."""
    if x is None:
        return None
    return "inf" if math.isinf(x) else round(x, 2)


# ---- the default student model ---------------------------------------------------------------------------------


def cheapest_haiku(prices) -> str:
    """The cheapest current Claude Haiku in the price table (base ids only; newest wins a tie).

    The model a few-shot student asks unless --model names another, and so the one
    `report` prices its few-shot estimate at. A model with an end of life (`retired`,
    past or announced) is never chosen: a student built on it would stop answering the
    day it is retired; unpriced ids have no price. InputError when the table has none.
    """
    from distill_cli.prices import base_model

    candidates = []
    for model in prices.model_ids:
        price = prices.lookup(model)
        if ("haiku" in model and price is not None and price.provider == "anthropic" and model == base_model(model)
                and prices.retired_on(model) is None):
            candidates.append((price.input + price.output, -price.effective.toordinal(), model))
    if not candidates:
        raise InputError("no current Claude Haiku in the price table; name the student model with --model")
    return min(candidates)[2]


# ---- the spend cap ---------------------------------------------------------------------------------------------


class SpendCapReached(ProviderError):
    """`max_spend` stopped the run before every example was scored (exit 4)."""


class SpendCap:
    """What a run has spent, and whether more work may start under `cap` USD (None: no cap).

    Two ways to ask, for two kinds of work:

    - `admit(in_flight)` (gate, drift: the cost of a unit is known only after it):
      work runs one unit at a time until one has cost something (so the price of
      one is known); after that a unit starts only while
      spent + (in flight + 1) x the dearest unit so far stays within the cap;
    - `reserve(estimate)` / `settle(estimate, actual)` (the LLM builder, which
      can bound a call's cost beforehand): a call is made only when its
      worst-case cost still fits under the cap with every reserved call's.
    """

    def __init__(self, cap: float | None) -> None:
        self.cap = cap
        self.total = 0.0
        self.dearest = 0.0
        self.done = 0
        self.stopped = False
        self.reserved = 0.0
        self.refused = 0

    @property
    def spent(self) -> float:
        return self.total

    def add(self, cost: float) -> None:
        self.total += cost
        self.dearest = max(self.dearest, cost)
        self.done += 1

    def admit(self, in_flight: int) -> str:
        """'go', 'wait' (for in-flight work to report its cost) or 'stop'."""
        if self.cap is None:
            return "go"
        if self.dearest == 0:
            return "go" if in_flight == 0 else "wait"
        if self.total + self.dearest * (in_flight + 1) <= self.cap:
            return "go"
        return "wait" if in_flight else "stop"

    def reserve(self, estimate: float) -> bool:
        """Hold `estimate` for a call about to be made; False (and counted as refused) if it would not fit."""
        if self.cap is not None and self.total + self.reserved + estimate > self.cap:
            self.refused += 1
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float | None) -> None:
        """Release a reservation and add what the call cost (the estimate when its cost is unknown)."""
        self.reserved -= estimate
        self.add(actual if actual is not None else estimate)
