"""Students: cheaper stand-ins for the teacher, all behind one interface.

A student file (`student/1`) is one Parquet file: the spec as JSON in the footer
metadata and the kind's data as rows (demonstrations, vocabulary, weights as
plain arrays). Loading a student never executes anything from the file.

    student = load_student("intent.student")
    answer = student.answer(request)        # request: an Anthropic or OpenAI request body
    if answer.declined: ...                 # the teacher answers instead

The kinds are listed once, in registry.py; each kind's module builds and loads
its students. build.py is `build-student`; training.py is what every build
starts from (the teacher's answers for a task, split).
"""

from distill_cli.students.base import (
    Answer,
    Student,
    StudentError,
    StudentSpec,
    in_holdout,
    read_student_file,
    request_input,
    write_student_file,
)
from distill_cli.students.registry import KINDS, load_student

__all__ = [
    "Answer",
    "KINDS",
    "Student",
    "StudentError",
    "StudentSpec",
    "in_holdout",
    "load_student",
    "read_student_file",
    "request_input",
    "write_student_file",
]
