"""The error a user can fix: a bad flag value, name, file or unprepared data.

The binaries print a `UserError`'s message without a traceback and exit non-zero; any other
exception is an internal error and keeps its traceback. Messages name the bad value and what
would be valid.
"""


class UserError(ValueError):
  """Raised for input the user can correct; the message says what was wrong and what is valid."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the user named (or that a step needs first) does not exist."""


class ExistingOutputError(UserError, FileExistsError):
  """The output already exists and replacing it was not asked for."""


class UnreachableError(UserError, OSError):
  """A service the user named (a TPU, a remote hub handle) does not answer."""
