"""Exact leave-one-out k-nearest-neighbour accuracy, the paper's expert-selection proxy.

Semantics (DESIGN.md, "kNN proxy semantics"): each point's neighbours are the *other* points (self
is excluded by index, not by distance, so exact duplicates count as neighbours), ordered by exact
float64 distance with ties going to the lower index. With k = 1 the prediction is the nearest other
point's label; with k > 1 it is the majority label among the k nearest others, and a tie between
classes goes to the class whose closest member among those k is nearer (earlier in that order).

Computation is blocked: one block of points against another at a time, so memory is O(block_size^2)
besides one float32 copy of the features. Distances are first computed in float32 as
|a|^2 + |b|^2 - 2ab on mean-centred features (one GEMM per pair of blocks); every point whose
float32 distance could, within a rigorous rounding-error bound, be among the k nearest is
recomputed exactly in float64 from the original features as sum((a - b)^2), and the final order
uses only those float64 distances. So float32 never flips a neighbour, not even under a large
common offset (centring removes it) or with many equal distances.
"""
import math

import numpy as np

from tfexperts import bounds
from tfexperts import errors

METRICS = ("euclidean", "cosine")
DEFAULT_MAX_BLOCK_BYTES = 256 * 2**20
# Default block size cap. Smaller blocks waste less on diagonal tiles (computed whole, used half)
# and keep a tile's scans in cache: at N=10k, d=2048, 2048-point blocks took 0.84x the time of
# 4096-point ones (best of 5 interleaved runs each, 2 cores).
MAX_DEFAULT_BLOCK_SIZE = 2048
# Bytes per entry of a tile: float32 distances and scratch, a mask, and a float32 partition copy
# when k > 1. Candidate pairs are handled in groups of bounded size, so ties cannot blow this up.
_BYTES_PER_BLOCK_ENTRY = 16
# Float64 rows materialised at once when recomputing candidate distances exactly.
_EXACT_CHUNK_BYTES = 32 * 2**20
_F32_EPS = 2.0**-24  # unit roundoff of float32


def _check_features(features, min_points=2):
  features = np.asarray(features)
  if features.ndim != 2 or not np.issubdtype(features.dtype, np.number) or (
      np.issubdtype(features.dtype, np.complexfloating)):
    raise errors.UserError("`features` must be a real 2-D array [num_points, dim]. Received: "
                           f"shape={features.shape}, dtype={features.dtype}")
  if features.shape[0] < min_points or features.shape[1] < 1:
    raise errors.UserError(f"`features` needs at least {min_points} points (leave-one-out needs "
                           f"another point) and 1 dimension. Received: shape={features.shape}")
  if not np.all(np.isfinite(features)):
    raise errors.UserError("`features` must be finite; found NaN or inf in rows "
                           f"{np.flatnonzero(~np.isfinite(features).all(axis=1))[:10].tolist()}")
  return features


class _Exact:
  """Exact float64 squared distances between rows of the original features (optionally normalised).

  Computed as sum((a - b)^2) over the last axis of C-contiguous float64 rows, the same arithmetic a
  brute-force float64 reference uses, so exact ties (e.g. integer data) stay exact ties.
  """

  def __init__(self, features, metric):
    self.features = features
    self.inv_norms = None
    if metric == "cosine":
      norms = np.sqrt(np.sum(np.square(features, dtype=np.float64), axis=1))
      # Zero rows stay zero: cosine similarity 0 (squared distance 1) to every unit vector.
      self.inv_norms = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

  def rows(self, index):
    rows = self.features[index].astype(np.float64)
    if self.inv_norms is not None:
      rows *= self.inv_norms[index][:, None]
    return rows

  def pairs(self, a, b):
    """Squared distances between rows a[t] and b[t] for each t (float64 [len(a)])."""
    out = np.empty(len(a), np.float64)
    step = max(1, _EXACT_CHUNK_BYTES // (16 * self.features.shape[1]))
    for s in range(0, len(a), step):
      if self.inv_norms is None:  # one float64 temporary: the cast is exact either way
        diff = np.subtract(self.features[a[s:s + step]], self.features[b[s:s + step]],
                           dtype=np.float64)
      else:
        diff = self.rows(a[s:s + step])
        diff -= self.rows(b[s:s + step])
      out[s:s + step] = np.sum(np.square(diff, out=diff), axis=1)
    return out


def _augmented_float32(exact, chunk):
  """Mean-centred float32 rows, scaled by a power of two, augmented for one-GEMM distances.

  Returns `(rows [n, d + 2], sq_norms [n])` where row i is `[c_i, 1, |c_i|^2]` (`c_i` the centred,
  scaled float32 row, `|c_i|^2` its squared norm computed in float64 and rounded to float32), so
  `[-2 c_i, |c_i|^2, 1] . rows[j]` is `|c_i|^2 + |c_j|^2 - 2 c_i c_j` in one GEMM.
  Centring removes any common offset, which otherwise dominates that sum in float32. The float64
  rows are scaled by a power of two (exact) so every centred norm is below 1 before the cast: the
  scale comes from max_i |x_i| + |mean|, a bound on the centred norms known after the first pass,
  so two passes over the features suffice (the mean and that bound, then the rows). Float32 is far
  from overflow and, as a centred row is 0 or at least ~2^-53 |x_i| in float64, from underflow.
  Memory: the float32 result plus float64 chunks.
  """
  n, d = exact.features.shape
  total = np.zeros(d, np.float64)
  max_sq_norm = 0.0
  for s in range(0, n, chunk):
    block = exact.rows(slice(s, s + chunk))
    total += block.sum(axis=0)
    max_sq_norm = max(max_sq_norm, float(np.einsum("ij,ij->i", block, block).max()))
  mean = total / n
  bound = math.sqrt(max_sq_norm) + math.sqrt(float(mean @ mean))
  scale = 2.0**-math.frexp(bound)[1] if bound > 0 else 1.0
  rows = np.empty((n, d + 2), np.float32)
  for s in range(0, n, chunk):
    centred = exact.rows(slice(s, s + chunk))
    centred -= mean
    centred *= scale
    rows[s:s + chunk, :d] = centred
    block = rows[s:s + chunk, :d]
    rows[s:s + chunk, d + 1] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
  rows[:, d] = 1.0
  return rows, rows[:, d + 1]


def _error_factor(dim):
  """c such that float32 candidate tests stay safe when bounding distances by c * (|a|^2 + |b|^2).

  For centred float32 rows a, b (u = 2^-24) the augmented GEMM sums dim + 2 products whose
  absolute values add up to 2|a.b|_1 + |a|^2 + |b|^2 <= 2(|a|^2 + |b|^2); in any summation order
  it errs by <= gamma_(dim+2) times that, gamma_m = m u / (1 - m u). Rounding the squared norms to
  float32 adds <= 2u; the rounding of the centred rows to float32 moves the squared distance by
  <= 4u; the float32 arithmetic of the candidate test (`_Search.tile`) by <= 9u on both sides
  combined. All is below (2 dim + 32) units, with 1% slack on top. It assumes IEEE float32 GEMM
  (not TF32 or bfloat16).
  """
  return np.float32((2 * dim + 32) * _F32_EPS / (1.0 - (dim + 2) * _F32_EPS) * 1.01)


def _k_smallest(x, k, axis):
  """The k smallest values along `axis` of 2-D x (unordered) as `[x.shape[1 - axis], k]`; all of
  them when there are at most k."""
  if x.shape[axis] > k:
    x = x.min(axis=axis, keepdims=True) if k == 1 else np.partition(x, k - 1, axis=axis)
    x = x[:, :k] if axis == 1 else x[:k]
  return x if axis == 1 else x.T


def _sparse_nonzero(mask):
  """`np.nonzero` of a C-contiguous 2-D boolean mask that is mostly False, faster: it scans the
  mask 8 entries (one 64-bit word) at a time and looks inside the nonzero words only."""
  flat = mask.reshape(-1)
  whole = flat.size - flat.size % 8
  words = np.flatnonzero(flat[:whole].view(np.uint64))
  index = (words[:, None] * 8 + np.arange(8)).reshape(-1)
  index = np.concatenate([index[flat[index]], whole + np.flatnonzero(flat[whole:])])
  return np.divmod(index, mask.shape[1])


def _row_groups(mask, max_pairs):
  """Yields (rows, cols) of the True entries of `mask`, whole rows at a time, ~max_pairs a group."""
  if np.count_nonzero(mask) <= max_pairs:  # the usual case: a few candidates per row
    yield _sparse_nonzero(mask)
    return
  ends = np.cumsum(np.count_nonzero(mask, axis=1))
  start = 0
  while start < len(ends):
    base = ends[start - 1] if start else 0
    stop = max(start + 1, int(np.searchsorted(ends, base + max_pairs, side="right")))
    rows, cols = np.nonzero(mask[start:stop])
    yield rows + start, cols
    start = stop


class _Search:
  """State of the search for every point: float32 upper bounds and the exact k best so far.

  `tile` takes the float32 distances between two blocks of points and serves the queries of both
  (rows against columns, and columns against rows). Per query it keeps the k smallest upper bounds
  seen (the query's own error term left out): no point whose lower bound exceeds the k-th of them
  can be among the k nearest, since k points are at least that close. Every other point of the tile
  is a candidate, kept with its float32 distance; `flush` (when `max_pairs` are pending, and at the
  end) drops the candidates that the bounds known by then exclude, recomputes the rest exactly and
  merges them into each query's k best (exact distance, index) pairs. So the result is exact
  whatever the order of tiles, and few more than n * k distances are recomputed.
  """

  def __init__(self, exact, bounds, k, max_pairs):
    n = len(bounds)
    self.exact, self.bounds, self.k, self.max_pairs = exact, bounds, k, max_pairs
    self.upper = np.full((n, k), np.inf, np.float32)
    self.dist = np.full((n, k), np.inf)
    self.index = np.full((n, k), np.iinfo(np.int64).max, np.int64)
    # Pending candidates: (row, col, float32 distance, whether col's query may take row too).
    self.pending, self.num_pending = [], 0

  def _threshold(self, approx, q0, axis, other_bound):
    """Candidate threshold of the queries along `axis` (0: rows, 1: columns) of the tile.

    Error terms of the other side are bounded by their block maximum `other_bound`, so one
    comparison per entry against a per-query threshold selects the candidates: a superset of
    lower_qc = approx_qc - b_q - b_c <= k-th(upper_qc') + b_q, with upper = approx + b_c'.
    """
    num_q = approx.shape[axis]
    upper = _k_smallest(approx, self.k, 1 - axis) + other_bound
    upper = _k_smallest(np.concatenate([self.upper[q0:q0 + num_q], upper], 1), self.k, 1)
    self.upper[q0:q0 + num_q] = upper
    return upper.max(axis=1) + np.float32(2.0) * self.bounds[q0:q0 + num_q] + other_bound

  def tile(self, approx, i0, j0, mask, spare):
    """Scans tile `approx` (float32 distances of points i0.. (rows) to j0.. (columns)) for the
    queries of both blocks, or of the rows only on a diagonal tile (i0 == j0), whose self pairs
    must be inf. `mask` and `spare` are boolean work space of the tile's shape."""
    rows, cols = approx.shape
    diagonal = i0 == j0
    b_rows, b_cols = self.bounds[i0:i0 + rows].max(), self.bounds[j0:j0 + cols].max()
    np.less_equal(approx, self._threshold(approx, i0, 0, b_cols)[:, None], out=mask)
    if not diagonal:
      np.less_equal(approx, self._threshold(approx, j0, 1, b_rows)[None, :], out=spare)
      mask |= spare
    else:  # self is never a candidate, even while its threshold is still inf
      np.fill_diagonal(mask, False)
    for r, c in _row_groups(mask, self.max_pairs):
      self.pending.append((r + i0, c + j0, approx[r, c], not diagonal))
      self.num_pending += len(r)
      if self.num_pending >= self.max_pairs:
        self.flush()

  def flush(self):
    """Recomputes the pending candidates that today's bounds keep, exactly, and merges them."""
    if not self.pending:
      return
    row, col, approx, both = (np.concatenate(parts) for parts in zip(*(
        (r, c, a, np.full(len(r), b)) for r, c, a, b in self.pending)))
    self.pending, self.num_pending = [], 0
    bounds = self.bounds
    threshold = lambda q: self.upper[q].max(axis=1) + np.float32(2.0) * bounds[q]
    forward = approx - bounds[col] <= threshold(row)
    backward = both & (approx - bounds[row] <= threshold(col))
    needed = forward | backward
    dist = np.zeros(len(row))
    dist[needed] = self.exact.pairs(row[needed], col[needed])
    self._merge(row[forward], col[forward], dist[forward])
    self._merge(col[backward], row[backward], dist[backward])

  def _merge(self, row, col, dist):
    """Merges candidates (row[t], col[t]) at exact squared distance dist[t] into the k best."""
    if not len(row):
      return
    k = self.k
    rows, group = np.unique(row, return_inverse=True)
    group = np.concatenate([np.repeat(np.arange(len(rows)), k), group.reshape(-1)])
    col = np.concatenate([self.index[rows].ravel(), col])
    dist = np.concatenate([self.dist[rows].ravel(), dist])
    order = np.lexsort((col, dist, group))
    group, col, dist = group[order], col[order], dist[order]
    rank = np.arange(len(group)) - np.searchsorted(group, group)  # position within the group
    keep = rank < k
    self.dist[rows[group[keep]], rank[keep]] = dist[keep]
    self.index[rows[group[keep]], rank[keep]] = col[keep]


def loo_neighbors(features, k=1, metric="euclidean", block_size=None,
                  max_block_bytes=DEFAULT_MAX_BLOCK_BYTES):
  """The k nearest *other* points of every point, exactly (see the module docstring for the order).

  Points are split into blocks of `block_size`; each pair of blocks (I, J >= I) is one float32 GEMM
  whose tile serves the queries of I against the columns of J and, transposed, those of J against
  I, so every distance is computed once.

  Args:
    features: `[n, d]` real array (any float or int dtype), n >= k + 1, finite.
    k: number of neighbours, 1 <= k <= n - 1.
    metric: "euclidean", or "cosine" (Euclidean distance between L2-normalised rows, the same order
      as cosine distance; all-zero rows stay zero).
    block_size: points per block (tiles are block_size x block_size); default the largest size
      whose scratch fits `max_block_bytes`, at most `MAX_DEFAULT_BLOCK_SIZE`.
    max_block_bytes: memory budget for one tile's scratch (16 bytes per tile entry).

  Returns:
    `(indices, sq_distances)`: int64 `[n, k]` neighbour indices and their float64 `[n, k]` squared
    distances (between normalised rows for cosine), nearest first, exact float64 values.
  Raises ValueError on bad arguments (message shows the received value).
  """
  features = _check_features(features)
  n, d = features.shape
  bounds.positive_int("k", k)
  if k > n - 1:
    raise errors.UserError(f"`k` must be at most num_points - 1 = {n - 1} (leave-one-out). "
                           f"Received: k={k}")
  if metric not in METRICS:
    raise errors.UserError(f"`metric` must be one of {METRICS}. Received: metric={metric!r}")
  bounds.positive_int("block_size", block_size, allow_none=True)
  bounds.positive_int("max_block_bytes", max_block_bytes)
  if block_size is None:
    block_size = max(1, min(MAX_DEFAULT_BLOCK_SIZE,
                            math.isqrt(max_block_bytes // _BYTES_PER_BLOCK_ENTRY)))
  block_size = min(block_size, n)

  exact = _Exact(features, metric)
  rows, sq_norms = _augmented_float32(exact, max(1, _EXACT_CHUNK_BYTES // (16 * d)))
  # The float32 error of distance (i, j) is at most bounds[i] + bounds[j].
  search = _Search(exact, sq_norms * _error_factor(d), k,
                   max_pairs=max(block_size * k, max_block_bytes // 64))
  out = np.empty(block_size * block_size, np.float32)
  mask = np.empty(block_size * block_size, bool)
  spare = np.empty(block_size * block_size, bool)
  for i0 in range(0, n, block_size):
    i1 = min(n, i0 + block_size)
    queries = rows[i0:i1].copy()  # [-2 c, |c|^2, 1]: the -2 is exact
    queries[:, :d] *= np.float32(-2.0)
    queries[:, d] = rows[i0:i1, d + 1]
    queries[:, d + 1] = 1.0
    for j0 in range(i0, n, block_size):
      j1 = min(n, j0 + block_size)
      size = (i1 - i0) * (j1 - j0)
      approx = np.matmul(queries, rows[j0:j1].T, out=out[:size].reshape(i1 - i0, j1 - j0))
      if i0 == j0:
        np.fill_diagonal(approx, np.inf)  # self is never a neighbour, whatever its distance
      search.tile(approx, i0, j0, mask[:size].reshape(approx.shape),
                  spare[:size].reshape(approx.shape))
  search.flush()
  return search.index, search.dist


def majority_vote(neighbor_labels):
  """Majority label per row of `[n, k]` neighbour labels ordered nearest first.

  A tie between classes goes to the class whose first occurrence is earlier (the nearer
  neighbour). Returns an `[n]` array of labels.
  """
  neighbor_labels = np.asarray(neighbor_labels)
  if neighbor_labels.ndim != 2 or neighbor_labels.shape[1] < 1:
    raise errors.UserError("`neighbor_labels` must be a 2-D array [n, k] with k >= 1. Received: "
                           f"shape={neighbor_labels.shape}")
  if neighbor_labels.shape[1] == 1:
    return neighbor_labels[:, 0]
  votes = (neighbor_labels[:, :, None] == neighbor_labels[:, None, :]).sum(axis=2)
  first_best = np.argmax(votes == votes.max(axis=1, keepdims=True), axis=1)
  return neighbor_labels[np.arange(len(neighbor_labels)), first_best]


def loo_predictions(features, labels, k=1, metric="euclidean", **block_kwargs):
  """Leave-one-out kNN predicted label of every point; returns `(predictions [n], indices [n, k])`.

  Takes the arguments of `loo_neighbors` plus `labels` (`[n]`, any comparable values).
  """
  labels = np.asarray(labels)
  features = np.asarray(features)
  if labels.ndim != 1 or features.ndim < 1 or labels.shape[0] != features.shape[0]:
    raise errors.UserError("`labels` must be a 1-D array with one label per row of `features`. "
                           f"Received: labels.shape={labels.shape}, features.shape="
                           f"{features.shape}")
  indices, _ = loo_neighbors(features, k=k, metric=metric, **block_kwargs)
  return majority_vote(labels[indices]), indices


def loo_accuracy(features, labels, k=1, metric="euclidean", **block_kwargs):
  """Leave-one-out kNN accuracy (fraction of points whose prediction equals their label).

  The paper's proxy with the defaults (k = 1, Euclidean). Takes the arguments of `loo_neighbors`
  plus `labels` (`[n]`); returns a float in [0, 1].
  """
  predictions, _ = loo_predictions(features, labels, k=k, metric=metric, **block_kwargs)
  return float(np.mean(predictions == np.asarray(labels)))
