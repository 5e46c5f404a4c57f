"""Atomic file writes through `tf.io.gfile` (local paths and `gs://` alike), and disk-full errors.

Nothing half-written is ever left under the final name: data goes to a unique temp name beside it,
which is then renamed over the target. Every write site runs inside `disk_writes`, which turns a
failure for lack of space, quota or file size into `errors.DiskFullError` naming the path and size.
"""
import contextlib
import errno
import fcntl
import json
import os
import posixpath
import sys
import uuid

from tfexperts import errors
from tfexperts import lazy

tf = lazy.LazyModule("tensorflow")  # the lease writes its file before TensorFlow has loaded

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# How the same failures read once TensorFlow or h5py has turned errno into a message.
DISK_FULL_MESSAGES = tuple(os.strerror(e) for e in sorted(DISK_FULL_ERRNOS))


def disk_full_reason(exc):
  """The reason (e.g. "No space left on device") when `exc` or an exception it chains from is a
  failed write for lack of space, quota or file size; else None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
      return os.strerror(exc.errno)
    tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    if isinstance(exc, OSError) or (tf_errors and isinstance(exc, tf_errors.OpError)):
      for message in DISK_FULL_MESSAGES:  # h5py's OSError and TF's OpError carry no errno
        if message.lower() in str(exc).lower():
          return message
    exc = exc.__cause__ or exc.__context__
  return None


@contextlib.contextmanager
def disk_writes(path, nbytes=None, qualifier=""):
  """Runs the `with` body (a write of `path`) turning a disk-full failure into DiskFullError.

  Args:
    path: what is being written (file or directory), named in the message.
    nbytes: its size in bytes, or a callable returning it (called only on failure), or None.
    qualifier: words before the size when it is an estimate ("about ", "at least ").

  Raises `errors.DiskFullError` (a UserError, so the binaries print it and exit 2) when the body
  fails with ENOSPC, EDQUOT or EFBIG; any other exception passes unchanged. Nested, the outermost
  site names the error (the finished model or module, not a temp file inside it).
  """
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless disk full)
    reason = disk_full_reason(e)
    if reason is None:
      raise
    try:
      size = nbytes() if callable(nbytes) else nbytes
    except Exception:  # pylint: disable=broad-except  (the size is only informative)
      size = None
    shown = f" ({qualifier}{size:,} bytes)" if size is not None else ""
    raise errors.DiskFullError(
        f"writing {path}{shown} failed: {reason}. Nothing incomplete was left under that name; "
        "free space (or raise the quota or file-size limit) and rerun the same command to "
        "continue.") from e


def variables_nbytes(variables):
  """Total bytes of the values of `variables` (TensorFlow or Keras variables)."""
  return sum(tf.TensorShape(v.shape).num_elements() * tf.as_dtype(v.dtype).size
             for v in variables)


def tree_nbytes(path):
  """Total bytes of the files below directory `path` (0 when it does not exist)."""
  if not tf.io.gfile.exists(path):
    return 0
  total = 0
  for directory, _, files in tf.io.gfile.walk(path):
    total += sum(tf.io.gfile.stat(os.path.join(directory, f)).length for f in files)
  return total


def parent_dir(path):
  """Returns the directory part of a local or URL-style (`gs://...`) path."""
  return posixpath.dirname(path) if "://" in path else os.path.dirname(path)


TEMP_MARKER = ".tmp-"


def temp_path_beside(path):
  """Returns a fresh, unused temp name in the same directory as `path` (same filesystem)."""
  return f"{path}{TEMP_MARKER}{uuid.uuid4().hex}"


def write_bytes_atomic(path, data):
  """Writes `data` (bytes) to `path` via a temp file and a rename; returns `path`.

  Readers see either no file or the complete file (on GCS, where rename is copy + delete, the
  object appears only once the copy is complete). Creates the parent directory if needed. Raises
  `errors.DiskFullError` naming `path` and the size when there is no room for it.
  """
  if not isinstance(data, (bytes, bytearray)):
    raise ValueError(f"`data` must be bytes. Received: {type(data).__name__}")
  directory = parent_dir(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  tmp = temp_path_beside(path)
  try:
    with disk_writes(path, len(data)):
      with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(bytes(data))
      tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
  return path


def write_json_atomic(path, obj):
  """Writes `obj` as indented, key-sorted JSON to `path` atomically; returns `path`."""
  return write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path):
  """Reads and returns the JSON object stored at `path`."""
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)


@contextlib.contextmanager
def exclusive(path):
  """Holds an exclusive lock on the local file `path` (created if missing) for the `with` body.

  Serializes read-modify-write updates of one file by several processes on one machine (e.g.
  concurrent evaluations appending to one results.csv). URL-style paths (`gs://...`) have no
  such lock: the body runs unlocked there.
  """
  if "://" in path:
    yield
    return
  os.makedirs(parent_dir(path) or ".", exist_ok=True)
  with open(path, "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)
