"""The stack layer's errors, each saying what kind of problem it is.

``infra`` knows nothing of imgcli's exit codes or terminal, so that it depends on nothing
but the functions' code: an error here carries a message, a hint of what to do, and a
``Problem`` (the user's to fix, no stack yet, the remote side's, a bug). The CLI's one
mapping from exceptions to messages and exit codes (``imgcli.errors.describe_failure``)
turns the problem into the exit code.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class Problem(enum.Enum):
    """Whose move it is: what the CLI's exit code tells a script."""

    USAGE = "usage"  # the command line, a name or the stack's record asks the impossible
    NO_STACK = "no_stack"  # the stack has not been bootstrapped
    REMOTE = "remote"  # AWS (or the local cloud) refused, failed or never settled
    INTERNAL = "internal"  # a bug in imgcli


class InfraError(Exception):
    """A stack operation cannot go ahead; the message says why, the hint what to do."""

    problem: ClassVar[Problem] = Problem.REMOTE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class StackUsageError(InfraError):
    """The stack cannot be used as asked (its name, or where this run would put it)."""

    problem = Problem.USAGE


class InvalidStackName(StackUsageError):
    """The stack name cannot be used in AWS resource names."""


class StateFileError(StackUsageError):
    """The stack's state file exists but cannot be used."""


class StackNotBootstrapped(InfraError):
    """The stack has no record of a bootstrap (or it was destroyed)."""

    problem = Problem.NO_STACK


class BucketNameTaken(StackUsageError):
    """The bucket name exists in another account (names are global)."""


class ResourceOfAnotherStack(StackUsageError):
    """A resource of this stack's name is tagged as another imgcli stack's."""


class BucketNotEmpty(StackUsageError):
    """destroy would have to delete images; ``--delete-images`` says it may."""


class PackagingError(InfraError):
    """The functions' bundle can't be built: the message says why, the hint what to do."""


class UnresolvedRef(InfraError):
    """A setting needs an output no earlier step has produced: a bug in the stack's order."""

    problem = Problem.INTERNAL
