"""LogME, LEEP and H-score against direct NumPy transcriptions of their published formulas."""
import numpy as np
import pytest

from tfexperts.select import hscore, leep, logme


def logme_transcription(f, y):
  """LogME (You et al.) in matrix form: A = alpha I + beta F^T F, m = beta A^-1 F^T y, the
  fixed-point updates alpha = gamma / (m^T m + 1e-5), beta = (N - gamma) / (|y - F m|^2 + 1e-5),
  at most 11 steps, stop when alpha / beta moves by <= 0.1%; evidence with log|A| over all D.
  F is first divided by its RMS entry (ours, not thuml's: makes the 1e-5 relative to the scale)."""
  f = f.astype(np.float64)
  f = f / np.sqrt(np.mean(f**2))
  n, d = f.shape
  ftf = f.T @ f
  eigenvalues = np.linalg.eigvalsh(ftf)
  evidences = []
  for c in range(y.max() + 1):
    target = (y == c).astype(np.float64)
    alpha, beta = 1.0, 1.0
    for _ in range(11):
      t = alpha / beta
      a = alpha * np.eye(d) + beta * ftf
      m = beta * np.linalg.solve(a, f.T @ target)
      gamma = np.sum(beta * eigenvalues / (alpha + beta * eigenvalues))
      m2 = m @ m
      res2 = np.sum((target - f @ m)**2)
      alpha = gamma / (m2 + 1e-5)
      beta = (n - gamma) / (res2 + 1e-5)
      if abs(alpha / beta - t) / t <= 1e-3:
        break
    _, log_det = np.linalg.slogdet(alpha * np.eye(d) + beta * ftf)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det - beta / 2 * res2
                - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    evidences.append(evidence / n)
  return np.mean(evidences)


def leep_transcription(theta, y):
  """LEEP (Nguyen et al.): empirical joint P(y, z), conditional P(y | z), mean log EEP."""
  n, num_source = theta.shape
  joint = np.zeros((y.max() + 1, num_source))
  for i in range(n):
    joint[y[i]] += theta[i] / n
  conditional = joint / joint.sum(axis=0)
  total = 0.0
  for i in range(n):
    total += np.log(sum(conditional[y[i], z] * theta[i, z] for z in range(num_source)))
  return total / n


def hscore_transcription(f, y):
  """H-score (Bao et al.) as their getHscore: tr(pinv(cov(f)) cov(g)), g = E[f | y] per image."""
  def get_cov(x):
    x_mean = x - np.mean(x, axis=0, keepdims=True)
    return np.dot(x_mean.T, x_mean) / (len(x) - 1)
  g = np.zeros_like(f)
  for z in set(y):
    g[y == z] = np.mean(f[y == z], axis=0)
  return np.trace(np.dot(np.linalg.pinv(get_cov(f), rcond=1e-15), get_cov(g)))


def make_task(n, d, num_classes, seed):
  rng = np.random.default_rng(seed)
  y = np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, n - num_classes)])
  centres = rng.standard_normal((num_classes, d))
  return centres[y] + rng.standard_normal((n, d)), y


@pytest.mark.parametrize("n,d", [(60, 12), (25, 40)])  # N > D and N < D (thuml issue #23 case)
def test_logme_matches_transcription(n, d):
  f, y = make_task(n, d, 4, seed=n)
  assert logme.logme(f, y) == pytest.approx(logme_transcription(f, y), rel=1e-8, abs=1e-10)


def test_logme_prefers_informative_features():
  f, y = make_task(100, 8, 3, seed=1)
  noise = np.random.default_rng(2).standard_normal(f.shape)
  assert logme.logme(f, y) > logme.logme(noise, y)


@pytest.mark.parametrize("n,d", [(60, 12), (25, 40)])
def test_logme_is_invariant_to_feature_scale(n, d):
  # BiT features are unnormalised ReLU outputs whose scale differs between experts.
  f, y = make_task(n, d, 4, seed=n + 1)
  scores = [logme.logme(s * f, y) for s in (0.01, 1.0, 100.0)]
  assert all(np.isfinite(scores))
  assert max(scores) - min(scores) <= 1e-6, scores


def test_logme_ranks_experts_that_differ_only_in_feature_scale():
  # Two experts with the same features at scales 0.01 and 100 tie; a worse expert at scale 0.01
  # stays below the better one at scale 100 (an absolute epsilon reversed that order).
  good, y = make_task(30, 60, 3, seed=11)
  worse = good + np.random.default_rng(12).standard_normal(good.shape) * 0.5
  assert logme.logme(0.01 * good, y) == pytest.approx(logme.logme(100 * good, y), abs=1e-6)
  assert logme.logme(100 * good, y) > logme.logme(0.01 * worse, y)
  assert logme.logme(good, y) > logme.logme(worse, y)


def test_leep_matches_transcription():
  rng = np.random.default_rng(3)
  logits = rng.standard_normal((40, 7)) * 2
  theta = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  y = rng.integers(0, 3, 40)
  assert leep.leep(theta, y) == pytest.approx(leep_transcription(theta, y), rel=1e-12)


def test_leep_handles_source_labels_no_image_predicts():
  theta = np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.9, 0.1, 0.0]])
  y = np.array([0, 1, 0])
  assert np.isfinite(leep.leep(theta, y))
  assert leep.leep(theta, y) == pytest.approx(leep_transcription(theta[:, :2], y), rel=1e-12)


def test_hscore_matches_transcription():
  f, y = make_task(80, 10, 5, seed=4)
  assert hscore.hscore(f, y) == pytest.approx(hscore_transcription(f, y), rel=1e-8)


def test_hscore_prefers_informative_features():
  f, y = make_task(200, 6, 3, seed=5)
  noise = np.random.default_rng(6).standard_normal(f.shape)
  assert hscore.hscore(f, y) > hscore.hscore(noise, y)


def test_hscore_degenerates_when_n_is_at_most_d_plus_1():
  # Documented caveat: with n <= d + 1 any features in general position score C - 1.
  f, y = make_task(30, 40, 4, seed=7)
  noise = np.random.default_rng(8).standard_normal(f.shape)
  assert hscore.hscore(f, y) == pytest.approx(3.0) and hscore.hscore(noise, y) == pytest.approx(3.0)
