"""Argument checks shared by the proxies: arrays of the right shape, labels, probabilities."""
import numpy as np

from tfexperts import errors


def features_2d(features, name="features"):
  """Returns `features` as a finite float64 `[n, d]` array; raises ValueError otherwise."""
  array = np.asarray(features)
  if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1 or not (
      np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
    raise errors.UserError(f"`{name}` must be a non-empty real 2-D array [num_images, dim]. "
                           f"Received: shape={array.shape}, dtype={array.dtype}")
  array = array.astype(np.float64)
  if not np.all(np.isfinite(array)):
    raise errors.UserError(f"`{name}` must be finite; found NaN or inf.")
  return array


def class_indices(labels, num_rows, name="labels"):
  """Maps `[n]` labels to class indices 0..C-1 (sorted unique labels); returns `(indices, C)`."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != num_rows:
    raise errors.UserError(f"`{name}` must be a 1-D array with one label per image ({num_rows}). "
                           f"Received: shape={labels.shape}")
  _, indices = np.unique(labels, return_inverse=True)
  return indices.reshape(-1), int(indices.max()) + 1 if len(indices) else 0


def probabilities(probs, name, ndim, num_rows=None):
  """Returns `probs` as float64 with `ndim` dims, entries >= 0 and each last-axis vector summing
  to 1 within 1e-3 (then renormalised exactly); raises ValueError naming `name` otherwise."""
  array = np.asarray(probs, dtype=np.float64)
  if array.ndim != ndim or array.size == 0:
    raise errors.UserError(f"`{name}` must be a non-empty {ndim}-D array of probabilities. "
                           f"Received: shape={array.shape}")
  if num_rows is not None and array.shape[0] != num_rows:
    raise errors.UserError(f"`{name}` must have one row per image ({num_rows}). Received: shape="
                           f"{array.shape}")
  if not np.all(np.isfinite(array)) or np.any(array < 0):
    raise errors.UserError(f"`{name}` must be finite and non-negative.")
  sums = array.sum(axis=-1, keepdims=True)
  if np.any(np.abs(sums - 1.0) > 1e-3):
    raise errors.UserError(f"`{name}` must sum to 1 over its last axis (softmax outputs). "
                           f"Received sums in [{sums.min():.4g}, {sums.max():.4g}]")
  return array / sums
