"""The gate as JUnit XML, for CI systems that show test reports (GitLab, Jenkins, GitHub test reporters).

Two suites: `distill gate: <task>` with one testcase per gated example (a
`failure` for a disagreement, an `error` for a student or judge error; a declined
example passes, since the teacher answers it), and `distill gate summary` with
one testcase that fails when the gate did not pass. Written with
xml.etree, atomically.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from distill_cli.economics import format_reduction
from distill_cli.files import check_output, write_atomically
from distill_cli.gate import GateSummary

MAX_TEXT = 2000  # characters of an input or answer kept in a failure body
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str | None, limit: int = MAX_TEXT) -> str:
    text = _NOT_XML.sub("\ufffd", text or "")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _one_line(text: str | None, limit: int = 200) -> str:
    return _clean(" ".join((text or "").split()), limit)


def junit_tree(summary: GateSummary) -> ET.ElementTree:
    verdicts = summary.verdicts
    failures = sum(1 for v in verdicts if v.disagreement)
    errors = sum(1 for v in verdicts if v.error is not None)
    seconds = sum(v.latency_ms for v in verdicts) / 1000
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    gate_failed = 0 if summary.passed else 1
    root = ET.Element(
        "testsuites",
        name="distill gate",
        tests=str(len(verdicts) + 1),
        failures=str(failures + gate_failed),
        errors=str(errors),
        time=f"{summary.seconds:.3f}",
    )
    examples = ET.SubElement(
        root,
        "testsuite",
        name=f"distill gate: {summary.task}",
        tests=str(len(verdicts)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{seconds:.3f}",
        timestamp=stamp,
    )
    properties = ET.SubElement(examples, "properties")
    for name in ("student", "student_kind", "task", "judge", "n", "coverage", "agreement", "lower_bound",
                 "min_agreement", "confidence", "passed", "decision", "reason"):
        ET.SubElement(properties, "property", name=name, value=_one_line(str(getattr(summary, name)), 500))
    classname = f"distill.gate.{summary.task}"
    for v in verdicts:
        case = ET.SubElement(examples, "testcase", classname=classname, name=v.example_id, time=f"{v.latency_ms / 1000:.3f}")
        body = f"input: {_clean(v.input)}\nteacher: {_clean(v.teacher_output)}\nstudent: {_clean(v.student_output)}"
        if v.error is not None:
            kind = f"{v.error_kind or 'student'}_error"
            node = ET.SubElement(case, "error", type=kind, message=_one_line(v.error))
            node.text = f"{body}\nerror: {_clean(v.error)}"
        elif v.disagreement:
            message = f"student {_one_line(v.student_output, 80)!r}, teacher {_one_line(v.teacher_output, 80)!r}"
            node = ET.SubElement(case, "failure", type="disagreement", message=message)
            confidence = "" if v.confidence is None else f"\nconfidence: {v.confidence:.3f}"
            node.text = f"{body}\njudge: {v.judge}: {_clean(v.reason)}{confidence}"
        elif not v.answered:
            ET.SubElement(case, "system-out").text = _clean(v.reason or "declined; the teacher answers")

    gate = ET.SubElement(root, "testsuite", name="distill gate summary", tests="1", failures=str(gate_failed),
                         errors="0", skipped="0", time=f"{summary.seconds:.3f}", timestamp=stamp)
    rule = f"lower bound >= {summary.min_agreement:.1%} over >= {summary.min_examples} examples"
    case = ET.SubElement(gate, "testcase", classname="distill.gate", name=f"{summary.student}: {rule}",
                         time=f"{summary.seconds:.3f}")
    text = (
        f"n {summary.n}, agreement {summary.agreement:.2%} [{summary.lower_bound:.2%}, {summary.upper_bound:.2%}], "
        f"coverage {summary.coverage:.1%}, errors {summary.errors}, cost reduction "
        f"{format_reduction(summary.cost_reduction)}; decision {summary.decision}: {summary.reason}"
    )
    if gate_failed:
        node = ET.SubElement(case, "failure", type=summary.decision, message=_one_line(summary.reason, 500))
        node.text = _clean(text)
    else:
        ET.SubElement(case, "system-out").text = _clean(text)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str | Path, summary: GateSummary) -> Path:
    check_output(path, "junit", "gate --junit")
    tree = junit_tree(summary)
    return write_atomically(path, lambda f: tree.write(f, encoding="utf-8", xml_declaration=True))
