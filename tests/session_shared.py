"""A directory the pytest-xdist workers of one test session share, so an expensive result one
worker computed (under `tfexperts.fileio.exclusive`) is read by the other instead of being
computed again (each worker otherwise builds its own session and module fixtures)."""
import os
import shutil

from tfexperts import fileio

_DONE = "done"  # marks a finished `build_once` (a worker that failed half-way leaves none)


def shared_dir(tmp_path_factory, name):
  """Path of directory `name`, created, shared by the xdist workers of this session (under the
  session's base temp directory; this process's own without xdist)."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # <session basetemp>/popen-gwN -> <session basetemp>
  path = os.path.join(str(base), name)
  os.makedirs(path, exist_ok=True)
  return path


def build_once(tmp_path_factory, name, build):
  """Directory `<shared_dir(name)>/content`, filled by `build(path)` (a function of that path)
  in the first worker of the session to get here; the others wait for it, then reuse it.

  The content must be read-only for the tests (see `fingerprint`). Returns the content's path.
  """
  root = shared_dir(tmp_path_factory, name)
  content = os.path.join(root, "content")
  with fileio.exclusive(os.path.join(root, "lock")):
    if not os.path.exists(os.path.join(root, _DONE)):
      shutil.rmtree(content, ignore_errors=True)  # what a failed build left
      os.makedirs(content)
      build(content)
      open(os.path.join(root, _DONE), "w").close()
  return content


def fingerprint(path):
  """Every file under `path` as a sorted list of (relative path, size, mtime in ns): what a test
  that wrote into a shared directory would change."""
  return sorted((os.path.relpath(os.path.join(d, f), path), os.path.getsize(os.path.join(d, f)),
                 os.stat(os.path.join(d, f)).st_mtime_ns)
                for d, _, files in os.walk(path) for f in files)


def assert_unchanged(path, before):
  """Asserts `fingerprint(path)` still equals `before` (a test wrote into a shared directory
  every worker reads: give that test a private copy instead)."""
  after = fingerprint(path)
  changed = sorted(set(before) ^ set(after))
  assert not changed, f"a test changed the shared directory {path}: {changed[:10]}"
