"""H-score (Bao et al., ICIP 2019): tr(cov(f)^+ cov(E[f | y])), as in the authors' code.

cov uses 1/(n - 1) and the pseudo-inverse (rcond 1e-15), like `getHscore` of
github.com/YaojieBao/An-Information-theoretic-Metric-of-Transferability. Caveat: when n <= d + 1
(e.g. VTAB-1k, n = 1000 < d = 2048) cov(f) has rank n - 1 and the exact score is C - 1 for every
feature set in general position, so the ranking is decided by rounding noise; prefer kNN or LogME
there.
"""
import numpy as np

from tfexperts.select import _checks

RCOND = 1e-15


def hscore(features, labels):
  """H-score of `features` `[n, d]` (n >= 2) for `labels` `[n]`; higher is better; a float."""
  features = _checks.features_2d(features)
  if features.shape[0] < 2:
    raise ValueError(f"`features` needs at least 2 rows for a covariance. "
                     f"Received: shape={features.shape}")
  classes, num_classes = _checks.class_indices(labels, features.shape[0])
  centred = features - features.mean(axis=0)
  cov_f = centred.T @ centred / (len(features) - 1)
  sums = np.zeros((num_classes, features.shape[1]))
  np.add.at(sums, classes, centred)
  class_means = sums / np.bincount(classes, minlength=num_classes)[:, None]
  g = class_means[classes]  # E[f | y] per image; its mean is already 0
  cov_g = g.T @ g / (len(features) - 1)
  return float(np.trace(np.linalg.pinv(cov_f, rcond=RCOND) @ cov_g))
