"""kNN leave-one-out: equality with a brute-force float64 reference, ties, duplicates, blocking."""
import collections

import numpy as np
import pytest

from tfexperts.select import knn

BLOCKINGS = [dict(), dict(block_size=1), dict(block_size=2), dict(block_size=7),
             dict(block_size=1000), dict(max_block_bytes=1024)]


def reference_neighbors(features, k=1):
  """Brute force in float64: full distance rows, self dropped by index, order (distance, index)."""
  x = np.asarray(features, dtype=np.float64)
  n = len(x)
  result = []
  for i in range(n):
    dist = np.sum((x[i] - x)**2, axis=1)
    order = [j for j in np.lexsort((np.arange(n), dist)) if j != i]
    result.append(order[:k])
  return np.array(result)


def reference_accuracy(features, labels, k=1):
  labels = np.asarray(labels)
  correct = 0
  for i, neighbors in enumerate(reference_neighbors(features, k)):
    votes = collections.Counter(labels[neighbors])
    best = max(votes.values())
    # Ties between classes: the class of the nearer neighbour wins.
    prediction = next(labels[j] for j in neighbors if votes[labels[j]] == best)
    correct += prediction == labels[i]
  return correct / len(labels)


def check_all_blockings(features, labels, k=1, metric="euclidean"):
  expected = reference_neighbors(features, k) if metric == "euclidean" else None
  results = []
  for blocking in BLOCKINGS:
    indices, _ = knn.loo_neighbors(features, k=k, metric=metric, **blocking)
    results.append(indices)
    if expected is not None:
      np.testing.assert_array_equal(indices, expected, err_msg=f"blocking={blocking}")
  for indices in results[1:]:
    np.testing.assert_array_equal(indices, results[0])
  if metric == "euclidean":
    assert knn.loo_accuracy(features, labels, k=k) == pytest.approx(
        reference_accuracy(features, labels, k), abs=0)
  return results[0]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("n,d", [(2, 1), (23, 5), (61, 33)])
def test_random_data_matches_reference(n, d, k):
  rng = np.random.default_rng(n * 100 + d)
  features = rng.standard_normal((n, d)).astype(np.float32)
  labels = rng.integers(0, 3, n)
  check_all_blockings(features, labels, k=min(k, n - 1))


def test_exact_duplicates_are_neighbours():
  rng = np.random.default_rng(1)
  base = rng.standard_normal((10, 4))
  features = np.concatenate([base, base[[3, 3, 7]]])  # rows 10, 11 copy 3; row 12 copies 7
  labels = np.arange(13) % 4
  indices = check_all_blockings(features, labels)
  assert indices[3, 0] == 10 and indices[10, 0] == 3 and indices[11, 0] == 3
  assert indices[7, 0] == 12 and indices[12, 0] == 7
  _, dist = knn.loo_neighbors(features)
  assert dist[3, 0] == 0.0 and dist[11, 0] == 0.0


def test_all_points_identical():
  features = np.ones((9, 3), np.float32)
  indices = check_all_blockings(features, np.arange(9) % 2, k=2)
  np.testing.assert_array_equal(indices[0], [1, 2])
  np.testing.assert_array_equal(indices[5], [0, 1])


def test_tie_heavy_integer_data_uses_lowest_index():
  # On a line: 0 has 1 and 2 at distance 1 -> 1; 1 has 0 and 3 at distance 1 -> 0.
  line = np.array([[0], [1], [-1], [2]])
  np.testing.assert_array_equal(knn.loo_neighbors(line)[0][:, 0], [1, 0, 0, 1])
  rng = np.random.default_rng(2)
  grid = rng.integers(0, 3, (80, 3))  # 27 distinct points: many duplicates and equal distances
  check_all_blockings(grid, rng.integers(0, 4, 80))
  check_all_blockings(grid.astype(np.float32), rng.integers(0, 4, 80), k=4)


def test_class_with_a_single_example():
  rng = np.random.default_rng(3)
  features = rng.standard_normal((30, 6))
  labels = np.repeat([0, 1], 15)
  labels[4] = 2  # the only example of class 2 can never be predicted correctly
  predictions, _ = knn.loo_predictions(features, labels)
  assert predictions[4] != 2
  check_all_blockings(features, labels)


def test_large_common_offset():
  rng = np.random.default_rng(4)
  features = (rng.standard_normal((100, 64)) + 1e4).astype(np.float32)
  labels = rng.integers(0, 5, 100)
  indices = check_all_blockings(features, labels)
  # Naive float32 |a|^2 + |b|^2 - 2ab flips neighbours here, so the case is a real test.
  norms = np.sum(features**2, axis=1)
  naive = norms[:, None] + norms[None, :] - 2 * features @ features.T
  np.fill_diagonal(naive, np.inf)
  assert np.mean(naive.argmin(axis=1) != indices[:, 0]) > 0.5


@pytest.mark.parametrize("magnitude", [1e45, 1e-45])
def test_float64_magnitudes_outside_float32_range(magnitude):
  # Cast to float32 unscaled, these rows would overflow to inf (1e45; without the scale this
  # case fails) or become subnormal (1e-45): the power-of-two scale from the first pass brings
  # them into range, offset included.
  rng = np.random.default_rng(6)
  features = (rng.standard_normal((60, 16)) + 30.0) * magnitude
  check_all_blockings(features, rng.integers(0, 3, 60))


def test_near_ties_resolved_in_float64():
  # Neighbours at distances differing by ~1e-9 relative: far below float32 resolution.
  rng = np.random.default_rng(5)
  base = rng.standard_normal((1, 256))
  direction = rng.standard_normal((40, 256))
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  radii = 1.0 + 1e-9 * rng.permutation(40)
  features = np.concatenate([base, base + radii[:, None] * direction])
  indices = check_all_blockings(features, np.arange(41) % 2)
  assert indices[0, 0] == 1 + np.argmin(radii)


def test_majority_vote_tie_goes_to_nearer_neighbour():
  np.testing.assert_array_equal(
      knn.majority_vote(np.array([[1, 2, 2, 1], [5, 6, 6, 7], [3, 4, 5, 6]])), [1, 6, 3])
  features = np.array([[0.0], [1.0], [-2.0], [10.0]])
  labels = np.array([0, 1, 2, 1])
  # Point 0: neighbours 1 (label 1), 2 (label 2) -> tie -> label 1, the nearer one.
  predictions, _ = knn.loo_predictions(features, labels, k=2)
  assert predictions[0] == 1


def test_cosine_matches_normalised_euclidean():
  rng = np.random.default_rng(6)
  features = rng.standard_normal((50, 8)) * rng.uniform(0.1, 100, (50, 1))
  labels = rng.integers(0, 3, 50)
  normalised = features / np.linalg.norm(features, axis=1, keepdims=True)
  indices = check_all_blockings(features, labels, k=2, metric="cosine")
  np.testing.assert_array_equal(indices, reference_neighbors(normalised, 2))
  assert knn.loo_accuracy(features, labels, metric="cosine") == reference_accuracy(normalised,
                                                                                   labels)


def test_argument_errors_show_the_received_value():
  features = np.zeros((4, 2))
  with pytest.raises(ValueError, match="k=4"):
    knn.loo_neighbors(features, k=4)
  with pytest.raises(ValueError, match="manhattan"):
    knn.loo_neighbors(features, metric="manhattan")
  with pytest.raises(ValueError, match="block_size=0"):
    knn.loo_neighbors(features, block_size=0)
  with pytest.raises(ValueError, match="shape=\\(1, 2\\)"):
    knn.loo_neighbors(np.zeros((1, 2)))
  with pytest.raises(ValueError, match="NaN"):
    knn.loo_neighbors(np.array([[0.0], [np.nan]]))
  with pytest.raises(ValueError, match="labels.shape=\\(3,\\)"):
    knn.loo_accuracy(features, [0, 1, 2])
