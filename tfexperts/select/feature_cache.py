"""On-disk cache of embedded datasets: one .npz per (module content, task, split, resolution,
preprocessing, cache format, precision).

The key holds the module's content identity (`tfexperts.hub.identity`), not only its handle: a
module re-exported with other weights at the same handle is a miss, never the old features.

The file name is a stable hash of the key; the file holds `features` (float32 `[n, d]`), `labels`
(`[n]`) and `key` (the key as canonical JSON, checked on load so a hash collision or a renamed file
is never mistaken for a hit). Files are written atomically, and a file that does not load
completely (e.g. truncated) is treated as missing, so a re-run recomputes it.
"""
import dataclasses
import hashlib
import io
import json
import posixpath
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from tfexperts import fileio

CACHE_FORMAT = 2  # bump when what a cached file means changes (format 1 keyed on the handle only)


# Key fields left out of the JSON at these values (features cached before the fields existed).
_UNCHANGED_WHEN = {"engine": "tensorflow", "precision": "float32"}


@dataclasses.dataclass(frozen=True)
class CacheKey:
  """Identifies one embedded dataset. All fields are used verbatim (e.g. no path normalisation).

  Attributes:
    handle: the expert's hub handle (path or URL), kept for messages and readability.
    module: the module's content identity (`hub.load.Expert.content_id`), plus an output suffix
      such as "#logits" when the features are not the pre-logits.
    task: task registry name. split: split name (e.g. "train800val200").
    resolution: input resolution in pixels. preprocessing: a string naming the preprocessing.
    engine: the inference engine that computed the features ("tensorflow" or "openvino").
    format: `CACHE_FORMAT`.
    precision: the compute precision the features were embedded at (`tfexperts.precision`).
      Left out of the JSON at float32, so float32 files written before it existed still hit.
  """
  handle: str
  module: str
  task: str
  split: str
  resolution: int
  preprocessing: str
  engine: str = "tensorflow"
  format: int = CACHE_FORMAT
  precision: str = "float32"

  def __post_init__(self):
    if not self.module:
      raise ValueError("CacheKey.module must name the module's content (its identity digest). "
                       f"Received: {self.module!r}")
    for name in ("handle", "module", "task", "split", "preprocessing", "engine", "precision"):
      if not isinstance(getattr(self, name), str):
        raise ValueError(f"CacheKey.{name} must be a string. Received: {getattr(self, name)!r}")
    if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or (
        self.resolution <= 0):
      raise ValueError(f"CacheKey.resolution must be a positive integer. "
                       f"Received: {self.resolution!r}")

  def to_json(self):
    """Canonical JSON of the key (sorted keys, no whitespace).

    `engine` and `precision` are left out at their defaults (TensorFlow, float32), so the keys of
    features cached before those fields existed, which is how they were computed, still match.
    """
    fields = dataclasses.asdict(self)
    for name, default in _UNCHANGED_WHEN.items():
      if fields[name] == default:
        del fields[name]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))

  def digest(self):
    """SHA-256 hex digest of `to_json()`; stable across runs, machines and Python versions."""
    return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


class FeatureCache:
  """Feature cache under directory `root` (local or gs://)."""

  def __init__(self, root):
    if not isinstance(root, str) or not root:
      raise ValueError(f"`root` must be a non-empty directory path. Received: {root!r}")
    self.root = root

  def path(self, key):
    """The .npz path for `key`: `<root>/<first 32 hex digits of key.digest()>.npz`."""
    return posixpath.join(self.root, key.digest()[:32] + ".npz")

  def load(self, key):
    """Returns `(features, labels)` for `key`, or None when missing, incomplete or mismatched."""
    path = self.path(key)
    if not tf.io.gfile.exists(path):
      return None
    try:
      with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
      with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        stored_key = str(npz["key"])
        features, labels = npz["features"], npz["labels"]
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError) as e:
      logging.warning("Ignoring unreadable feature cache file %s (%s); recomputing.", path, e)
      return None
    if stored_key != key.to_json():
      logging.warning("Feature cache file %s holds key %s, not %s; recomputing.", path,
                      stored_key, key.to_json())
      return None
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
      logging.warning("Feature cache file %s has inconsistent shapes %s and %s; recomputing.",
                      path, features.shape, labels.shape)
      return None
    return features, labels

  def save(self, key, features, labels):
    """Atomically writes `features` `[n, d]` (as float32) and `labels` `[n]`; returns the path."""
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
      raise ValueError("`features` must be [n, d] and `labels` [n] with the same n. "
                       f"Received: features.shape={features.shape}, labels.shape={labels.shape}")
    buffer = io.BytesIO()
    np.savez(buffer, features=features, labels=labels, key=np.array(key.to_json()))
    return fileio.write_bytes_atomic(self.path(key), buffer.getvalue())
