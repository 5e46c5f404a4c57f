"""Results shared by the pytest-xdist workers of one test session: a directory they all see, and an
exclusive lock, so an expensive result one worker computed is read by the other instead of being
computed again (each worker otherwise builds its own session and module fixtures)."""
import contextlib
import fcntl
import os


def shared_dir(tmp_path_factory, name):
  """Path of directory `name`, created, shared by the xdist workers of this session (under the
  session's base temp directory; this process's own without xdist)."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # <session basetemp>/popen-gwN -> <session basetemp>
  path = os.path.join(str(base), name)
  os.makedirs(path, exist_ok=True)
  return path


@contextlib.contextmanager
def locked(path):
  """Holds an exclusive `flock` on file `path` (created) for the `with` block: one worker at a
  time, across processes."""
  with open(path, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
