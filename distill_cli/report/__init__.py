"""`distill report`: what the recorded calls cost, what distillation saved, and what to do next."""

from distill_cli.report.build import Budget, Report, build_report, classify_inputs, parse_budget, parse_since

__all__ = ["Budget", "Report", "build_report", "classify_inputs", "parse_budget", "parse_since"]
