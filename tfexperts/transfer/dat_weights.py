"""Importance weights of Domain Adaptive Transfer (Ngiam et al., 2018) over upstream classes.

The task's distribution over upstream labels, p_T(y), is the mean of a generic upstream model's
predicted label distribution over the task's training images. The upstream prior p_S(y) is the
label frequency of the upstream data. Upstream class y gets weight w(y) = p_T(y) / p_S(y), so that
resampling the upstream data by w makes its label distribution equal p_T.

Multi-label upstream data (an image with several labels): the model's sigmoids are normalised
over labels per image before averaging (p_T sums to 1), p_S counts every label occurrence, and an
image's weight is the mean of its labels' weights (an image without labels has weight 0). With
one label per image this is exactly the single-label rule.
"""
import numpy as np


def task_label_distribution(label_probs):
  """Mean over images of `[n, C]` per-image upstream label distributions; returns `[C]` p_T."""
  probs = np.asarray(label_probs, np.float64)
  if probs.ndim != 2 or probs.shape[0] == 0:
    raise ValueError(f"`label_probs` must be a non-empty [images, classes] array. Received "
                     f"shape={probs.shape}")
  if not np.all(np.isfinite(probs)) or np.any(probs < 0):
    raise ValueError("`label_probs` must be finite and non-negative.")
  probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-300)
  return probs.mean(axis=0)


def class_weights(task_distribution, upstream_counts):
  """DAT's per-class weights w(y) = p_T(y) / p_S(y).

  Args:
    task_distribution: `[C]` p_T (non-negative, summing to 1).
    upstream_counts: `[C]` label occurrences in the upstream data (p_S = counts / total).

  Returns:
    `[C]` float64 weights, 0 for classes with no upstream image (they can never be drawn).
    Raises ValueError on mismatched or invalid inputs, or when no class with upstream images has
    task mass (every weight would be 0).
  """
  p_t = np.asarray(task_distribution, np.float64)
  counts = np.asarray(upstream_counts, np.float64)
  if p_t.ndim != 1 or p_t.shape != counts.shape:
    raise ValueError(f"`task_distribution` and `upstream_counts` must be [C] arrays of one size. "
                     f"Received shapes {p_t.shape} and {counts.shape}")
  if np.any(counts < 0) or counts.sum() <= 0 or np.any(p_t < 0):
    raise ValueError("`upstream_counts` must be non-negative with a positive sum and "
                     "`task_distribution` non-negative.")
  p_s = counts / counts.sum()
  weights = np.where(counts > 0, p_t / np.where(counts > 0, p_s, 1.0), 0.0)
  if not np.any(weights > 0):
    raise ValueError("No upstream class with images has task mass: every DAT weight is 0.")
  return weights


def summary(weights, upstream_counts, class_names=None, top=5):
  """What the weights do to the upstream data, as a JSON-ready dict.

  Takes `[C]` class weights, `[C]` upstream label counts and optional class names. For single-label
  data (each image counted once), `effective_sample_size` = (sum_i w_i)^2 / sum_i w_i^2 over the
  upstream images, the number of equally weighted images the weighted data is worth;
  `acceptance_rate` is the fraction of images kept by rejection sampling with probability
  w / max(w); `top_classes` lists the classes with the largest share of the resampled data.
  """
  weights = np.asarray(weights, np.float64)
  counts = np.asarray(upstream_counts, np.float64)
  total = counts.sum()
  mass = weights * counts
  ess = float(mass.sum() ** 2 / np.sum(weights ** 2 * counts)) if mass.sum() > 0 else 0.0
  order = np.argsort(-mass, kind="stable")[:top]
  names = list(class_names) if class_names is not None else [str(i) for i in range(len(weights))]
  return {"num_upstream_images": int(total), "effective_sample_size": ess,
          "effective_fraction": ess / total if total else 0.0,
          "acceptance_rate": float(mass.sum() / (weights.max() * total)),
          "max_weight": float(weights.max()), "classes_with_weight": int(np.sum(weights > 0)),
          "top_classes": [{"class": names[i], "share": float(mass[i] / mass.sum()),
                           "weight": float(weights[i])} for i in order]}
