"""The kinds of student are listed once (registry.py), each kind's module builds and loads, and students/ has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from distill_cli.console.build_student import Kind
from distill_cli.errors import InputError
from distill_cli.students import cache, load_student, registry, write_student_file
from distill_cli.students.base import StudentSpec

PACKAGE = Path(registry.__file__).parent


def test_the_console_offers_exactly_the_registry_kinds_and_auto():
    assert [k.value for k in Kind] == ["auto", *registry.KINDS]
    assert Kind.few_shot.value == "few-shot"


@pytest.mark.parametrize("kind", list(registry.KINDS))
def test_every_kind_module_builds_and_loads(kind):
    module = registry.kind_module(kind)
    assert callable(module.build) and callable(module.load)


def test_students_modules_import_each_other_without_a_cycle():
    imports = {}
    for path in PACKAGE.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distill_cli.students"):
                names.update(
                    [node.module.rsplit(".", 1)[-1]] if node.module != "distill_cli.students" else [a.name for a in node.names]
                )
        imports[path.stem] = {n for n in names if (PACKAGE / f"{n}.py").exists()} - {path.stem}
    imports.pop("__init__")

    def reaches(start: str, target: str, seen: set) -> bool:
        for nxt in imports.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    assert [m for m in imports if reaches(m, m, set())] == []
    assert not any("build" in imports[m] for m in ("cache", "classifier", "few_shot", "endpoint", "training"))


def test_an_unknown_kind_is_refused(tmp_path):
    path = write_student_file(
        tmp_path / "x.student", StudentSpec(id="x", kind="telepathy", task="t", teacher_model=None), cache.rows_for({})
    )
    with pytest.raises(InputError, match="unknown student kind 'telepathy'"):
        load_student(path)
