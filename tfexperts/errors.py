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


class DivergedError(UserError, ArithmeticError):
  """A training or fine-tuning run's loss or weights became NaN or infinite.

  Attributes `run` (the stage or sweep point), `step`, `learning_rate` and `checkpoint` (the last
  finite checkpoint kept, or None) say where; the message says what to change.
  """

  def __init__(self, message, run=None, step=None, learning_rate=None, checkpoint=None):
    super().__init__(message)
    self.run, self.step, self.learning_rate, self.checkpoint = run, step, learning_rate, checkpoint


class NonFiniteModelError(UserError, ArithmeticError):
  """A model to be saved or exported holds NaN or infinite weights (it diverged in training)."""


class PreemptedError(Exception):
  """A run stopped on SIGTERM (preemption) after writing a checkpoint at its current step.

  Not a `UserError`: nothing is wrong with the input; the binaries exit with EX_TEMPFAIL (75) and
  rerunning the same command resumes from `checkpoint` (the attributes `run`, `step`, `checkpoint`
  say where it stopped).
  """

  def __init__(self, message, run=None, step=None, checkpoint=None):
    super().__init__(message)
    self.run, self.step, self.checkpoint = run, step, checkpoint


class DiskFullError(UserError, OSError):
  """A write failed for lack of space, quota or allowed file size (ENOSPC, EDQUOT, EFBIG).

  The message names the path and how many bytes were being written; the write left nothing
  incomplete under the final name, so rerunning once space is freed continues.
  """
