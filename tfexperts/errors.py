"""The error a user can fix: a bad flag value, name, file or unprepared data.

The binaries print a `UserError`'s message without a traceback and exit non-zero; any other
exception is an internal error and keeps its traceback. Messages name the bad value and what
would be valid.
"""


class UserError(ValueError):
  """Raised for input the user can correct; the message says what was wrong and what is valid."""
