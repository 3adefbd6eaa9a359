"""`distill report`: what the recorded calls cost, what distillation saved, and what to do next.

Reads any distill Parquet, each file used for what its `distill.schema` says it
is: example stores (the calls), verdicts files (gate results), drift logs and
student files. Every aggregation over calls runs in DuckDB as a few GROUP BY
passes over narrow columns; Python only rolls up the small grouped results.

The economics, per task (README, "How the money is counted"):

- spend = the recorded cost of every row, shadow rows included (they are extra
  spend caused by distillation); `calls` counts what the job asked for
  (teacher + student + fallback rows), never shadow rows;
- teacher-only cost = what those calls would have cost had the teacher answered
  all of them: the cost of teacher and fallback rows, the exact teacher cost a
  shadow row measured for the student call it checks, and for every other
  student-served call the task's mean cost per teacher call;
- savings = teacher-only cost - spend.

A row whose cost is null (a model without a price) is counted and named, never
summed as 0. This package never prints and never exits; it returns a `Report`.
"""

from distill_cli.report.build import SCHEMA, Report, build_report
from distill_cli.report.inputs import Budget, classify_inputs, parse_budget, parse_since

__all__ = ["SCHEMA", "Budget", "Report", "build_report", "classify_inputs", "parse_budget", "parse_since"]
