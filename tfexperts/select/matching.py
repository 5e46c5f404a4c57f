"""Proxies that match a task to experts' upstream domains without the experts' features.

Label matching (paper, Sec. 3.2): a generic upstream model predicts upstream labels on the task's
images; their mean softmax q is the task's distribution over upstream labels. Expert e has an
empirical prior p_e over upstream labels (label frequencies of the images it was trained on). The
score is -KL(q || p_e) = -sum_k q_k log(q_k / p_e(k)): the task's distribution comes first, so an
expert is penalised for upstream labels the task uses but the expert has (almost) never seen.
Priors of sub-tree experts are zero outside their sub-tree and would make that KL infinite, so the
prior is smoothed: p' = (p + eps) / (1 + K eps) with eps = `smoothing` (K upstream labels); terms
with q_k = 0 contribute 0.

Domain prediction: an expert prediction network (EPN) gives per-image probabilities p(e | x) over
the experts' domains; the score of expert e is the mean over the task's images of log p(e | x)
(the log of their geometric mean). Probabilities are floored at `floor` before the log so that one
image with p = 0 does not make the score -inf.
"""
import numpy as np

from tfexperts.select import _checks

DEFAULT_SMOOTHING = 1e-6
DEFAULT_FLOOR = 1e-12


def task_label_distribution(upstream_probs):
  """Mean over images of `[n, K]` upstream softmax outputs; returns the `[K]` distribution q."""
  return _checks.probabilities(upstream_probs, "upstream_probs", ndim=2).mean(axis=0)


def smoothed_prior(prior, smoothing=DEFAULT_SMOOTHING):
  """Normalises a `[K]` prior (probabilities or label counts) and mixes in `smoothing` per label."""
  prior = np.asarray(prior, dtype=np.float64)
  if prior.ndim != 1 or prior.size == 0 or not np.all(np.isfinite(prior)) or np.any(prior < 0) or (
      prior.sum() <= 0):
    raise ValueError("`prior` must be a non-empty 1-D array of non-negative label frequencies "
                     f"with a positive sum. Received: shape={prior.shape}")
  if not smoothing >= 0:
    raise ValueError(f"`smoothing` must be >= 0. Received: smoothing={smoothing!r}")
  prior = prior / prior.sum()
  return (prior + smoothing) / (1.0 + smoothing * prior.size)


def kl_divergence(q, p):
  """KL(q || p) = sum_k q_k log(q_k / p_k) for `[K]` distributions, with 0 log 0 = 0."""
  q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
  if q.shape != p.shape:
    raise ValueError(f"Distributions must have the same shape. Received: {q.shape} and {p.shape}")
  support = q > 0
  with np.errstate(divide="ignore"):
    return float(np.sum(q[support] * (np.log(q[support]) - np.log(p[support]))))


def label_matching_score(upstream_probs, prior, smoothing=DEFAULT_SMOOTHING):
  """-KL(q || smoothed prior): higher is better (0 when the expert's prior equals q).

  Args:
    upstream_probs: `[n, K]` generic upstream model's softmax on the task's images.
    prior: `[K]` the expert's upstream label frequencies (probabilities or counts).
    smoothing: see `smoothed_prior`.
  """
  q = task_label_distribution(upstream_probs)
  p = smoothed_prior(prior, smoothing)
  if q.shape != p.shape:
    raise ValueError("`upstream_probs` and `prior` must cover the same upstream labels. "
                     f"Received: {q.shape[0]} and {p.shape[0]} labels")
  return -kl_divergence(q, p)


def domain_prediction_score(domain_probs, expert_index, floor=DEFAULT_FLOOR):
  """Mean over images of log p(expert | image) from an EPN; higher is better.

  Args:
    domain_probs: `[n, E]` EPN softmax over the E expert domains, one row per task image.
    expert_index: column of the scored expert, 0 <= expert_index < E.
    floor: probabilities are clipped to at least this before the log.
  """
  probs = _checks.probabilities(domain_probs, "domain_probs", ndim=2)
  if isinstance(expert_index, bool) or not isinstance(expert_index, (int, np.integer)) or not (
      0 <= expert_index < probs.shape[1]):
    raise ValueError(f"`expert_index` must be an integer in [0, {probs.shape[1]}). "
                     f"Received: expert_index={expert_index!r}")
  return float(np.mean(np.log(np.maximum(probs[:, expert_index], floor))))
