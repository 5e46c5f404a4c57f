"""A directory the pytest-xdist workers of one test session share, so an expensive result one
worker computed (under `tfexperts.fileio.exclusive`) is read by the other instead of being
computed again (each worker otherwise builds its own session and module fixtures)."""
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
