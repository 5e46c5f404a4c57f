"""Intervals and paired tests for test accuracies: is a difference more than noise?

- `wilson_interval`: the 95% Wilson score interval of one accuracy on n test examples.
- `mcnemar_exact`: the exact McNemar test of two models on the *same* examples: a two-sided
  binomial test (p = 1/2) on the discordant examples (one model right, the other wrong).
- `paired_difference_interval`: Newcombe's (1998) square-and-add interval (his method 10) for the
  difference of two paired accuracies: the two Wilson intervals combined with the
  continuity-corrected phi correlation of the 2x2 table. Deterministic, no resampling.
- `compare`: both of the above plus a verdict, "better" / "worse" when the exact McNemar test
  rejects equality at `alpha` (0.05) and "no significant difference" otherwise. The verdict comes
  from the exact test; the interval is a separate (asymptotic) statement of the difference's size,
  so at the margin the two can disagree (e.g. p = 0.052 with an interval just excluding 0).
- `pack_correct` / `unpack_correct`: per-example correctness stored compactly (base64 of packed
  bits) in JSON records.
"""
import base64
import math

import numpy as np

VERDICTS = ("better", "no significant difference", "worse")


def _z(confidence):
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"`confidence` must be in (0, 1). Received: {confidence!r}")
  return float(stats.norm.ppf(0.5 + confidence / 2))


def _count(name, value):
  if isinstance(value, bool) or int(value) != value or value < 0:
    raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")
  return int(value)


def wilson_interval(correct, total, confidence=0.95):
  """Wilson score interval of the proportion `correct / total`; returns `(low, high)`."""
  correct, total = _count("correct", correct), _count("total", total)
  if total == 0 or correct > total:
    raise ValueError(f"Need 0 <= correct <= total and total > 0. Received: correct={correct}, "
                     f"total={total}")
  z = _z(confidence)
  p = correct / total
  denominator = 1 + z * z / total
  center = (p + z * z / (2 * total)) / denominator
  half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
  return max(0.0, center - half), min(1.0, center + half)


def _as_bool(name, values):
  array = np.asarray(values)
  if array.ndim != 1 or array.size == 0:
    raise ValueError(f"`{name}` must be a non-empty 1-D array of per-example correctness. "
                     f"Received shape {array.shape}")
  if array.dtype != bool and not np.isin(array, (0, 1)).all():
    raise ValueError(f"`{name}` must hold only booleans or 0/1. Received values "
                     f"{sorted(set(array.tolist()))[:5]}")
  return array.astype(bool)


def paired_table(correct_a, correct_b):
  """`(both, only_a, only_b, neither)` counts of two per-example correctness vectors."""
  a, b = _as_bool("correct_a", correct_a), _as_bool("correct_b", correct_b)
  if a.shape != b.shape:
    raise ValueError(f"Paired vectors must cover the same examples. Received lengths {a.size} "
                     f"and {b.size}")
  return (int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))


def mcnemar_exact(only_a, only_b):
  """Two-sided exact McNemar p-value from the discordant counts (A right only, B right only)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  only_a, only_b = _count("only_a", only_a), _count("only_b", only_b)
  discordant = only_a + only_b
  if discordant == 0:
    return 1.0
  return min(1.0, 2.0 * float(stats.binom.cdf(min(only_a, only_b), discordant, 0.5)))


def paired_difference_interval(both, only_a, only_b, neither, confidence=0.95):
  """Newcombe's square-and-add interval of accuracy(A) - accuracy(B) on paired examples.

  Takes the 2x2 counts of `paired_table`; returns `(difference, low, high)`.
  """
  counts = [_count(n, v) for n, v in (("both", both), ("only_a", only_a), ("only_b", only_b),
                                       ("neither", neither))]
  both, only_a, only_b, neither = counts
  n = sum(counts)
  if n == 0:
    raise ValueError("The paired table is empty (no examples).")
  p1, p2 = (both + only_a) / n, (both + only_b) / n
  l1, u1 = wilson_interval(both + only_a, n, confidence)
  l2, u2 = wilson_interval(both + only_b, n, confidence)
  margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
  phi = 0.0
  if margins > 0:
    cross = both * neither - only_a * only_b
    # Newcombe's continuity correction of phi: shrink a positive cross product by n/2.
    if cross > n / 2:
      phi = (cross - n / 2) / math.sqrt(margins)
    elif cross < 0:
      phi = cross / math.sqrt(margins)
  low = (p1 - p2) - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2
                                  - 2 * phi * (p1 - l1) * (u2 - p2)))
  high = (p1 - p2) + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2
                                   - 2 * phi * (p2 - l2) * (u1 - p1)))
  return p1 - p2, max(-1.0, low), min(1.0, high)


def compare(correct_a, correct_b, alpha=0.05):
  """Paired comparison of A against B on the same examples.

  Returns a dict: `difference` (accuracy A - B), `interval` [low, high] (95% Newcombe),
  `p_value` (exact McNemar), `only_a` / `only_b` (discordant counts), `n` and `verdict`
  ("better" / "no significant difference" / "worse": A relative to B at level `alpha`).
  """
  both, only_a, only_b, neither = paired_table(correct_a, correct_b)
  difference, low, high = paired_difference_interval(both, only_a, only_b, neither)
  p_value = mcnemar_exact(only_a, only_b)
  verdict = VERDICTS[1]
  if p_value < alpha:
    verdict = VERDICTS[0] if only_a > only_b else VERDICTS[2]
  return {"difference": difference, "interval": [low, high], "p_value": p_value,
          "only_a": only_a, "only_b": only_b, "n": both + only_a + only_b + neither,
          "verdict": verdict}


def pack_correct(correct):
  """Base64 text of a boolean per-example correctness vector (8 examples per byte)."""
  array = _as_bool("correct", correct)
  return base64.b64encode(np.packbits(array).tobytes()).decode("ascii")


def unpack_correct(text, size):
  """The boolean vector of `size` examples that `pack_correct` encoded as `text`."""
  size = _count("size", size)
  bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))
  if bits.size < size or bits.size - size >= 8:
    raise ValueError(f"Packed correctness holds {bits.size} bits, which does not fit "
                     f"size={size}.")
  return bits[:size].astype(bool)
