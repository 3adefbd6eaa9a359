"""What to do about each task: the recommendation (when to distill, with the evidence) and the budget decisions.

First match wins: high-stakes calls, a failed drift check, the newest gate,
too few examples, then an estimate for the kind `build-student --kind auto`
would build (or a cache, when inputs repeat). The arithmetic of the estimates
is economics.py's.
"""

from __future__ import annotations

from pathlib import Path

from distill_cli.economics import as_reduction, cheapest_haiku, json_reduction, reduction_at, reduction_text
from distill_cli.errors import InputError
from distill_cli.formatting import round_usd
from distill_cli.report.inputs import Budget
from distill_cli.report.rows import TaskRow
from distill_cli.report.task_stats import MIN_EXAMPLES

CACHE_MIN_REPEAT_SHARE = 0.2  # a cache student pays off when this share of inputs repeats
ASSUMED_COVERAGE = 0.9  # the share a not-yet-gated classifier / few-shot student is assumed to answer
MONTH_DAYS = 30


# ---- recommendation -----------------------------------------------------------------------------------------


def recommend(task: TaskRow, gate: dict | None, drift: dict | None, prices) -> None:
    """When to distill, with the evidence: sets the task's recommendation, advice and `keep`."""
    advice: dict = {"kind": None, "expected_cost_reduction": None, "source": None, "reason": ""}
    task.keep = None
    if task.high_stakes:
        rec, task.keep = "keep teacher (high-stakes)", "high-stakes"
        advice["reason"] = f"{task.high_stakes_calls:,} calls are tagged high-stakes in metadata"
    elif drift is not None and drift["status"] in ("drifted", "demoted"):
        rec = f"keep teacher: student {drift['status']}"
        task.keep = f"student {drift['status']}"
        advice["reason"] = "the latest drift check failed; rebuild and gate the student"
    elif gate is not None:
        rec = _from_gate(task, gate, advice)
    elif task.examples < MIN_EXAMPLES:
        rec = f"collecting ({task.examples}/{MIN_EXAMPLES})"
        advice["reason"] = f"{MIN_EXAMPLES} teacher answers are needed to build and gate a student"
    else:
        rec = _from_estimate(task, prices, advice)
    advice["expected_cost_reduction"] = json_reduction(advice["expected_cost_reduction"])
    task.recommendation = rec
    task.advice = advice


def _from_gate(task: TaskRow, gate: dict, advice: dict) -> str:
    """The newest gate decides: its kind, its reduction, passed or not."""
    reduction = as_reduction(gate.get("cost_reduction"))
    advice.update(kind=_gate_kind(gate), expected_cost_reduction=reduction, source="gate", reason=_gate_reason(gate))
    if gate.get("passed") and gate.get("changed_since"):
        task.keep = "student file changed since its gate"
        advice["reason"] += "; the student file given changed since this gate: gate it again"
        return "keep teacher: the gate does not cover the student file"
    if gate.get("passed"):
        rec = "distilled" if task.tally.student_calls else "distill"
        if advice["kind"] == "chain" and gate.get("student"):
            rec += f": chain {gate['student']}"  # a gated chain decides as any student: its reduction, its pass
        elif advice["kind"]:
            rec += f": {advice['kind']}"
        if reduction:
            rec += f", {reduction_text(reduction)}"
        return rec + " (gate passed)"
    agreement = gate.get("agreement")
    rate = f"{agreement:.1%}" if isinstance(agreement, (int, float)) else "unknown"
    task.keep = f"student quality too low ({rate})"
    return f"keep teacher: gate failed (agreement {rate})"


def _from_estimate(task: TaskRow, prices, advice: dict) -> str:
    """No gate yet: the kind to build, and what it is expected to save."""
    if task.closed_set:
        kind = "classifier"
        why = f"{task.distinct_outputs} distinct outputs cover {task.top_outputs_coverage:.0%} of answers"
    elif (task.repeat_share or 0) >= CACHE_MIN_REPEAT_SHARE:
        kind = "cache"
        why = f"{task.repeat_share:.0%} of inputs repeat"
    else:
        kind = "few-shot"
        why = "open-ended outputs: a cheaper model prompted with examples"
    reduction, how = _student_estimate(task, kind, prices)
    advice.update(kind=kind, expected_cost_reduction=reduction, source="estimate", reason=f"{why}; {how}")
    rec = f"distill: {kind}" + (f", est. {reduction_text(reduction)}" if reduction else f" ({how})")
    monthly = task.teacher_only_per_day_usd * MONTH_DAYS * (1 - 1 / reduction) if reduction else 0.0
    if reduction:
        rec += f" (~${monthly:,.2f}/month)"
        advice["estimated_monthly_saving_usd"] = round_usd(monthly)
    return rec


def _student_estimate(task: TaskRow, kind: str, prices) -> tuple[float | None, str]:
    """(expected cost reduction, how it was estimated) for a not-yet-gated student of `kind`."""
    teacher = task.teacher_cost_per_call_usd
    if not teacher:
        return None, "no priced teacher call to compare with"
    if kind == "cache":
        r = task.repeat_share
        return (reduction_at(r) if r < 1 else None), f"a cache answers the {r:.0%} of calls whose input repeats, at no cost"
    if kind == "classifier":
        return reduction_at(ASSUMED_COVERAGE), f"assumes a local classifier (cost ~0) answers {ASSUMED_COVERAGE:.0%}"
    try:
        haiku = prices.lookup(cheapest_haiku(prices))  # the model a few-shot build asks by default
    except InputError:
        haiku = None
    if haiku is None:
        return None, "no Haiku price to estimate a few-shot student"
    student = (task.prompt_avg * haiku.input + task.output_avg * haiku.output) / 1e6
    return reduction_at(ASSUMED_COVERAGE, student, teacher), f"assumes {haiku.model} on the same tokens answers {ASSUMED_COVERAGE:.0%}"


def _gate_reason(gate: dict) -> str:
    bits = []
    for key, label in (("agreement", "agreement"), ("lower_bound", "lower bound"), ("coverage", "coverage")):
        if isinstance(gate.get(key), (int, float)):
            bits.append(f"{label} {gate[key]:.1%}")
    return f"gate ({Path(gate['file']).name}): " + (", ".join(bits) or "no figures")


def _gate_kind(gate: dict) -> str | None:
    kind = gate.get("kind") or gate.get("student_kind")
    return kind if isinstance(kind, str) else None


# ---- budget: a decision per task within its share of the budget --------------------------------------------------


def budget_decisions(budget: Budget, tasks: list[TaskRow]) -> dict:
    """Whether the spend rate fits `budget`, per task and in total, and a decision per task (set on each task too).

    Each task's target is its share of the budget in proportion to its teacher-only
    cost, so the targets add up to the budget. Decision: `no_change` when the
    teacher-only cost is within the target, `collecting` below 100 examples,
    `fallback_teacher` when the task must stay on the teacher (no passing gate,
    high-stakes, drifted), `distilled` when a gate passed, with its cost reduction.
    """
    scale = budget.amount
    factor = 1.0 if budget.per == "day" else MONTH_DAYS  # per-day rates -> the budget's period
    total_teacher = sum(t.teacher_only_per_day_usd for t in tasks) * factor
    rows = []
    after_total = 0.0
    for t in tasks:
        t.budget, after = _budget_row(t, factor, scale, total_teacher)
        after_total += after
        rows.append(t.budget)
    spend_total = sum(r["spend_usd"] for r in rows)
    return {
        "amount_usd": budget.amount,
        "per": budget.per,
        "spend_usd": round_usd(spend_total),
        "teacher_only_usd": round_usd(total_teacher),
        "fits": spend_total <= scale,
        "after_usd": round_usd(after_total),
        "fits_after": after_total <= scale,
        "tasks": rows,
    }


def _budget_row(t: TaskRow, factor: float, scale: float, total_teacher: float) -> tuple[dict, float]:
    """One task's line of the budget, and its spend after the decision (unrounded, for the total)."""
    spend = t.cost_per_day_usd * factor
    teacher = t.teacher_only_per_day_usd * factor
    target = scale * (teacher / total_teacher) if total_teacher else scale
    reduction = as_reduction(t.advice.get("expected_cost_reduction"))
    if teacher <= target:
        decision, reason = "no_change", "already within budget"
    elif t.examples < MIN_EXAMPLES:
        decision, reason = "collecting", f"need more examples ({t.examples}/{MIN_EXAMPLES})"
    elif t.keep:
        decision, reason = "fallback_teacher", t.keep
    elif t.gate is None:
        decision, reason = "fallback_teacher", "not gated yet (build-student, then gate)"
    else:
        decision, reason = "distilled", f"cost reduction {reduction_text(reduction)}" if reduction else "gate passed"
    after = teacher / reduction if decision == "distilled" and reduction else spend
    if_distilled = teacher / reduction if reduction else None
    row = {
        "task": t.task,
        "spend_usd": round_usd(spend),
        "teacher_only_usd": round_usd(teacher),
        "target_usd": round_usd(target),
        "fits": spend <= target,
        "decision": decision,
        "reason": reason,
        "cost_reduction": json_reduction(reduction),
        "reduction_source": t.advice.get("source"),
        "after_usd": round_usd(after),
        "if_distilled_usd": round_usd(if_distilled) if if_distilled is not None else None,
    }
    return row, after


def notes(totals: dict, levers: list[dict]) -> list[str]:
    """What the reader must know about the figures: calls left out of the totals, estimates."""
    out = []
    if totals["unknown_cost_calls"]:
        named = ", ".join(f"{m} ({n:,})" for m, n in totals["unknown_cost_models"].items())
        out.append(f"{totals['unknown_cost_calls']:,} calls of unknown cost are not in the totals: {named}")
    if totals["teacher_only_unknown_calls"]:
        out.append(
            f"teacher-only cost leaves out {totals['teacher_only_unknown_calls']:,} calls with no priced teacher call to compare"
        )
    if levers:
        out.append("lever savings are estimates from the recorded calls; prompt caching from a sample of requests")
    return out
