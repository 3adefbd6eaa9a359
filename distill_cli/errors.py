"""Errors and exit statuses: the one place a failure becomes an exit code.

Library code raises these and never prints or exits; the CLI layer turns an
exception into a one-line `Error: ...` and `ExitStatus`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    CHECK_FAILED = 1  # gate below threshold, drift detected
    USAGE = 2  # bad flags
    INPUT = 3  # missing path, corrupt / wrong-kind / wrong-version file, unknown task
    PROVIDER = 4  # upstream unreachable, auth refused, spend cap hit
    NOT_ENOUGH_DATA = 5  # empty store, fewer examples than asked for
    INTERNAL = 70  # a bug in distill (EX_SOFTWARE): never confused with a failed check
    INTERRUPTED = 130


class DistillError(Exception):
    """Base of every error distill reports to a user."""

    exit_status = ExitStatus.INPUT


class InputError(DistillError):
    """A path, file or value the user gave cannot be used."""

    exit_status = ExitStatus.INPUT


class ProviderError(DistillError):
    """An upstream provider failed in a way retries could not cure."""

    exit_status = ExitStatus.PROVIDER


class NotEnoughData(DistillError):
    """Too few examples to decide anything."""

    exit_status = ExitStatus.NOT_ENOUGH_DATA
