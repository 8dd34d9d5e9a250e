"""Error types; each carries the exit code the CLI returns for it."""

from __future__ import annotations


class AnyconvError(Exception):
    """Base of every error anyconv reports to a user as one line.

    ``hint`` says what to do about it; the CLI prints it in brackets.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AnyconvError):
    """The command line or call does not make sense."""

    exit_code = 2


class FormatNotFoundError(AnyconvError):
    """No plugin reads or writes the format asked for or detected."""

    exit_code = 3


class ReadError(AnyconvError):
    """The input is missing, unreadable, invalid or corrupt."""

    exit_code = 4


class WriteError(AnyconvError):
    """The output cannot be written."""

    exit_code = 5


class OutputExistsError(WriteError):
    """The output exists and ``force`` was not given."""

    exit_code = 5


class LossyConversionError(AnyconvError):
    """The target format cannot hold the data without loss."""

    exit_code = 6


class PluginError(AnyconvError):
    """A plugin failed to load or broke its contract."""

    exit_code = 1
