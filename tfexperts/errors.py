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


def did_you_mean(name, valid):
  """Returns " Did you mean 'x'?" for the valid name closest to `name` (a str), else "".

  `valid` is an iterable of str. Used at the end of "unknown name" messages so a misspelt task,
  proxy, preset or stage points at the intended one.
  """
  import difflib  # pylint: disable=g-import-not-at-top  (only on the error path)
  matches = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
  return f" Did you mean {matches[0]!r}?" if matches else ""


class DiskFullError(UserError, OSError):
  """A write failed for lack of space, quota or allowed file size (ENOSPC, EDQUOT, EFBIG).

  The message names the path and how many bytes were being written; the write left nothing
  incomplete under the final name, so rerunning once space is freed continues.
  """
