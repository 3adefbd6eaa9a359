"""Students: cheaper stand-ins for the teacher, all behind one interface.

A student file (`student/1`) is one Parquet file: the spec as JSON in the footer
metadata and the kind's data as rows (demonstrations, vocabulary, weights as
plain arrays). Loading a student never executes anything from the file.

    student = load_student("intent.student")
    answer = student.answer(request)        # request: an Anthropic or OpenAI request body
    if answer.declined: ...                 # the teacher answers instead
"""

from distill_cli.students.base import (
    Answer,
    Student,
    StudentError,
    StudentSpec,
    in_holdout,
    load_student,
    read_student_file,
    request_input,
    write_student_file,
)

__all__ = [
    "Answer",
    "Student",
    "StudentError",
    "StudentSpec",
    "in_holdout",
    "load_student",
    "read_student_file",
    "request_input",
    "write_student_file",
]
