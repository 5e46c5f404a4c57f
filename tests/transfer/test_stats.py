"""Wilson intervals, exact McNemar and Newcombe's paired interval against hand-computed values."""
import math

import numpy as np
import pytest

from tfexperts.transfer import stats

Z = 1.959963984540054  # the 97.5% normal quantile


def test_wilson_interval_matches_the_formula_by_hand():
  # 5 of 10: center 0.5, half-width z * sqrt(2.5 + z^2 / 4) / (10 + z^2).
  half = Z * math.sqrt(2.5 + Z * Z / 4) / (10 + Z * Z)
  low, high = stats.wilson_interval(5, 10)
  assert low == pytest.approx(0.5 - half, abs=1e-12) and high == pytest.approx(0.5 + half,
                                                                                abs=1e-12)
  assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
  # 0 of 10: [0, z^2 / (n + z^2)]; 10 of 10 mirrors it.
  assert stats.wilson_interval(0, 10) == pytest.approx((0.0, Z * Z / (10 + Z * Z)))
  assert stats.wilson_interval(10, 10) == pytest.approx((10 / (10 + Z * Z), 1.0))
  # 786 of 1000, the size of the demo's tables: +-2.5 points.
  low, high = stats.wilson_interval(786, 1000)
  assert (round(low, 4), round(high, 4)) == (0.7595, 0.8103)


def test_wilson_interval_rejects_impossible_counts():
  with pytest.raises(ValueError, match="correct=11, total=10"):
    stats.wilson_interval(11, 10)
  with pytest.raises(ValueError, match="total=0"):
    stats.wilson_interval(0, 0)
  with pytest.raises(ValueError, match="2.5"):
    stats.wilson_interval(2.5, 10)


def test_exact_mcnemar_on_constructed_vectors():
  # 22 discordant examples, 6 one way and 16 the other: p = 2 * sum_{k<=6} C(22, k) / 2^22.
  a = np.array([True] * 59 + [True] * 6 + [False] * 16 + [False] * 80)
  b = np.array([True] * 59 + [False] * 6 + [True] * 16 + [False] * 80)
  assert stats.paired_table(a, b) == (59, 6, 16, 80)
  expected = 2 * sum(math.comb(22, k) for k in range(7)) / 2 ** 22
  assert stats.mcnemar_exact(6, 16) == pytest.approx(expected, rel=1e-12)
  assert stats.mcnemar_exact(6, 16) == pytest.approx(0.0524788, abs=1e-7)
  comparison = stats.compare(a, b)
  assert comparison["verdict"] == "no significant difference"
  assert comparison["difference"] == pytest.approx(-10 / 161)
  # One-sided evidence: 10 vs 0 discordant, p = 2 / 2^10.
  a, b = np.array([1] * 10 + [1] * 50), np.array([0] * 10 + [1] * 50)
  assert stats.mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
  assert stats.compare(a, b)["verdict"] == "better"
  assert stats.compare(b, a)["verdict"] == "worse"
  same = stats.compare(a, a)
  assert same["p_value"] == 1.0 and same["difference"] == 0.0
  assert same["verdict"] == "no significant difference"


def test_newcombe_paired_interval_matches_published_values():
  # Fagerland, Lydersen & Laake (2017), Cavo et al. (2012): -0.0621 (95% CI -0.1186 to -0.0046).
  difference, low, high = stats.paired_difference_interval(59, 6, 16, 80)
  assert (round(difference, 4), round(low, 4), round(high, 4)) == (-0.0621, -0.1186, -0.0046)
  # Bentur et al. (2009), same book: a negative cross product is used as is.
  difference, low, high = stats.paired_difference_interval(1, 1, 7, 12)
  assert difference == pytest.approx(-6 / 21)
  assert low < difference < high < 0


def test_paired_inputs_are_checked():
  with pytest.raises(ValueError, match="lengths 3 and 2"):
    stats.paired_table([1, 0, 1], [1, 0])
  with pytest.raises(ValueError, match="0/1"):
    stats.paired_table([1, 2], [1, 0])


def test_correctness_packs_into_base64_and_back():
  rng = np.random.default_rng(0)
  for size in (1, 8, 13, 1000):
    correct = rng.random(size) < 0.7
    text = stats.pack_correct(correct)
    assert len(text) == 4 * math.ceil(math.ceil(size / 8) / 3)
    np.testing.assert_array_equal(stats.unpack_correct(text, size), correct)
  with pytest.raises(ValueError, match="size=20"):
    stats.unpack_correct(stats.pack_correct([True] * 8), 20)
