"""Drift: is a student that passed its gate still fit to serve? Run from cron, night after night.

    result = run_drift("intent.student", "runs/", since="24h", log="drift.parquet", demote=True)
    result.status, result.drifted, result.reasons, result.to_dict()

Four checks over the calls of the student's task in the window (`since` before `now`):

- agreement: the student's answers against the teacher's on the same calls (the
  shadow pairs the router recorded and, with `live_teacher`, a sample of recent
  student-served inputs re-asked of the teacher now, cost counted and capped by
  `max_spend`), judged as the gate judges. End-to-end agreement counts declines as
  agreeing, as the gate does. A sequential detector over the drift log's runs
  decides (a mixture CUSUM e-detector between agreement >= `min_agreement` and
  lower alternatives): when agreement stays at or above `min_agreement`, the
  chance of any false alarm in the first T runs is at most T / (2 x `arl`), however
  many runs cron makes. docs/drift.md explains it.
- input: a domain classifier (TF-IDF, logistic regression) trying to tell recent
  inputs from the student's training inputs; drifted when its cross-fitted AUC
  exceeds max(0.55, the AUC a label-blind scorer reaches with chance 1/(6 x `arl`)).
- decline: the decline rate against the one measured on the student's dev split.
- output: the served answers' distribution against the teacher's on training rows
  (closed sets of answers only): Jensen-Shannon distance, with a bootstrap p-value
  and a 0.1 floor.
Each single-run test is at level 1/(6 x `arl`), so all four together raise a false
alarm in the first T runs with chance at most T / `arl`.

Demotion. With `demote`, a drifted run writes the marker `<student file>.demoted`
(serving.py: what it holds, what the router asks, what lifts it). A run given
`verdicts` removes a marker that no longer counts (`clear_demotion`).

The modules, each with one job:
  results    Check and DriftResult: what a run returns (drift-result/1)
  window     the window `--since` names
  queries    what a run reads from the stores (the router's row contract)
  agreement  the sequential agreement detector and the agreement check
  shifts     the input, decline and output checks
  teacher    the live teacher of --live-teacher
  judging    pairs checked by the live teacher and the judge, under the spend cap
  log        the drift log: its rows, reading, appending
  run        run_drift, the steps in order

The package never prints and never exits; it writes only the drift log (one row per
run, appended by rewriting to a temporary file and renaming) and the marker.
"""

from distill_cli.drift.agreement import ALTERNATIVES, AgreementDetector, alternatives, fold_evidence, run_log_evidence
from distill_cli.drift.judging import CONCURRENCY, Spent
from distill_cli.drift.log import LogRow, append_log, read_log
from distill_cli.drift.queries import INPUT_SAMPLE, SERVING, Pair, Traffic
from distill_cli.drift.results import CHECKS, RESULT_SCHEMA, Check, DriftResult
from distill_cli.drift.run import LIVE_SAMPLE, run_drift
from distill_cli.drift.shifts import (
    AUC_FLOOR,
    DECLINE_MARGIN,
    JS_FLOOR,
    MIN_INPUTS,
    decline_shift,
    dev_decline_rate,
    input_shift,
    null_auc_spread,
    output_shift,
)
from distill_cli.drift.teacher import Teacher
from distill_cli.drift.window import window_start
from distill_cli.serving import is_demoted  # the README and docs/drift.md import it from here

__all__ = [
    "ALTERNATIVES",
    "AUC_FLOOR",
    "CHECKS",
    "CONCURRENCY",
    "DECLINE_MARGIN",
    "INPUT_SAMPLE",
    "JS_FLOOR",
    "LIVE_SAMPLE",
    "MIN_INPUTS",
    "RESULT_SCHEMA",
    "SERVING",
    "AgreementDetector",
    "Check",
    "DriftResult",
    "LogRow",
    "Pair",
    "Spent",
    "Teacher",
    "Traffic",
    "alternatives",
    "append_log",
    "decline_shift",
    "dev_decline_rate",
    "fold_evidence",
    "input_shift",
    "is_demoted",
    "null_auc_spread",
    "output_shift",
    "read_log",
    "run_drift",
    "run_log_evidence",
    "window_start",
]
