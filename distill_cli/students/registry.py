"""The kinds of student, listed once, and `load_student`, which reads a student file of any kind.

Each kind's module has `build(ctx) -> (spec, rows, spent_usd, notes)` (ctx: a
`training.BuildContext`) and `load(spec, rows, path) -> Student`. A module is
imported only when a student of its kind is built or loaded, so loading a cache
student never pays for scikit-learn or a provider SDK. Loading never executes
anything from the file.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import pyarrow as pa

from distill_cli.errors import InputError
from distill_cli.students.base import Student, StudentSpec, read_student_file

# kind -> the module (in this package) that builds and loads it
KINDS: dict[str, str] = {
    "cache": "cache",
    "classifier": "classifier",
    "few-shot": "few_shot",
    "optimized": "few_shot",
    "endpoint": "endpoint",
}
AUTO = "auto"  # build-student picks classifier or few-shot from the teacher's outputs
BUILD_CHOICES = (AUTO, *KINDS)

Loader = Callable[[StudentSpec, pa.Table, Path], Student]
# Loaders of kinds defined outside this package (a test's scripted student); they cannot be built.
LOADERS: dict[str, Loader] = {}


def kind_module(kind: str) -> ModuleType:
    """The module of one of `KINDS`: its `build` and `load`."""
    return importlib.import_module(f"distill_cli.students.{KINDS[kind]}")


def load_student(
    path: str | Path, needed_by: str = "this command", *, allowed_endpoints: tuple[str, ...] | list[str] = ()
) -> Student:
    """Load any kind of student; never executes code from the file.

    InputError (exit 3) for a file that is not a student, was changed after it was
    built, or whose rows or settings do not fit its kind; and for an LLM student whose
    endpoint is neither a provider's API host nor in `allowed_endpoints` (endpoints.py).
    """
    started = time.perf_counter()
    spec, table = read_student_file(path, needed_by)
    if spec.kind in KINDS:
        loader = kind_module(spec.kind).load
    elif spec.kind in LOADERS:
        loader = LOADERS[spec.kind]
    else:
        raise InputError(f"{path}: unknown student kind {spec.kind!r}")
    try:
        student = loader(spec, table, Path(path))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, pa.ArrowException) as e:
        raise InputError(
            f"{path}: student file is damaged: its rows or settings do not fit kind {spec.kind!r} ({type(e).__name__}: {e})"
        ) from None
    student.authorize(tuple(allowed_endpoints))
    student.load_ms = (time.perf_counter() - started) * 1000
    return student


def load_chain(
    paths: list, needed_by: str = "this command", *, allowed_endpoints: tuple[str, ...] | list[str] = ()
) -> Student:
    """One student, or a chain (students/chain.py) of several in the order given."""
    students = [load_student(p, needed_by, allowed_endpoints=allowed_endpoints) for p in paths]
    if len(students) == 1:
        return students[0]
    from distill_cli.students.chain import Chain

    return Chain(students)
