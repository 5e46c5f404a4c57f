"""Atomic file writes through tf.io.gfile (local paths and gs:// alike)."""
import posixpath
import uuid

import tensorflow as tf

TEMP_MARKER = ".tmp-"


def write_bytes(path, data):
  """Writes `data` (bytes) to `path`: first to a unique temporary name beside it, then renamed.

  Readers therefore see either no file or the complete file, never a partial one (on GCS, where
  rename is copy + delete, the object appears only once the copy is complete). Creates the parent
  directory if needed. Returns `path`.
  """
  if not isinstance(data, (bytes, bytearray)):
    raise ValueError(f"`data` must be bytes. Received: {type(data).__name__}")
  parent = posixpath.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  temp = f"{path}{TEMP_MARKER}{uuid.uuid4().hex}"
  try:
    with tf.io.gfile.GFile(temp, "wb") as f:
      f.write(bytes(data))
    tf.io.gfile.rename(temp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(temp):
      tf.io.gfile.remove(temp)
  return path
