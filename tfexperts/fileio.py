"""Atomic file writes through `tf.io.gfile` (local paths and `gs://` alike).

Nothing half-written is ever left under the final name: data goes to a unique temp name beside it,
which is then renamed over the target.
"""
import contextlib
import fcntl
import json
import os
import posixpath
import uuid

import tensorflow as tf


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
  object appears only once the copy is complete). Creates the parent directory if needed.
  """
  if not isinstance(data, (bytes, bytearray)):
    raise ValueError(f"`data` must be bytes. Received: {type(data).__name__}")
  directory = parent_dir(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  tmp = temp_path_beside(path)
  try:
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
