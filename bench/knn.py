"""Benchmark: our exact leave-one-out 1-NN beside scikit-learn, faiss, NumPy and the GEMM floor.

For each N (default 1k, 10k, 50k) at d = 2048, the same seeded float32 data (100 Gaussian classes
around a common offset, like post-ReLU features) is given to each method, each in a fresh
subprocess run one after the other, `--rounds` times (default 3) in that process, the best round
reported (every round's seconds are printed too):
  ours     tfexperts.select.knn.loo_neighbors (symmetric blocked float32 GEMM + exact float64
           re-ranking); after each of its rounds the same process times the GEMM floor: one
           full N x N x d float32 GEMM (X @ X.T in row blocks, so its output stays <= 256 MiB),
           the work of the whole distance matrix, of which leave-one-out by symmetry needs only
           half (ours and the floor alternate, so a change in the machine's speed hits both)
  sklearn  NearestNeighbors(n_neighbors=2).fit(X).kneighbors(X), self dropped by index (if self
           is not among the 2, both are exact duplicates of it and the first is taken)
  faiss    faiss-cpu IndexFlatL2 (float32, not exact), search of 2, self dropped as for sklearn;
           skipped when faiss is not installed (`pip install -e .[bench]`)
  numpy    float64 |a|^2 + |b|^2 - 2ab as one N x N matrix, diagonal set to inf, argmin (skipped
           when the matrix plus a float64 copy of X would exceed --matrix_cap_gb): the float64
           reference the others are checked against
Per method it reports wall seconds (data generation and imports excluded), and two memory numbers:
  rss+     peak resident set size of the subprocess (ru_maxrss) minus its resident size just
           before the method started (after imports and data generation, which is done in place
           so it leaves no higher earlier peak): extra memory the method needed, counting every
           allocation (BLAS buffers, scikit-learn's C++/OpenMP buffers, ...);
  traced   tracemalloc's peak during the method: allocations made through Python's allocator,
           which includes NumPy arrays but not scikit-learn's C++/OpenMP buffers.
Then the ratios to ours and whether the methods agree on every point's neighbour and the accuracy.
Run it with the fast BLAS kernel (unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the command); it
prints the kernel in use and the load average.

Usage: python bench/knn.py [--sizes 1000,10000,50000] [--dim 2048] [--matrix_cap_gb 8]
                           [--methods ours,sklearn,faiss,numpy] [--rounds 3] [--skip_floor]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from _common import blas_kernel  # bench/ is the script's directory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("ours", "sklearn", "faiss", "numpy")
GEMM_OUT_BYTES = 256 * 2**20


def make_data(n, dim, classes, seed):
  """Seeded float32 features `[n, dim]` (generated in float32, no float64 temporary) and labels."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n)  # drawn first, so they do not depend on dim
  centres = rng.standard_normal((classes, dim), dtype=np.float32)
  features = rng.standard_normal((n, dim), dtype=np.float32)
  for s in range(0, n, 1024):  # in place, so no temporary raises the pre-method RSS peak
    features[s:s + 1024] += np.float32(0.2) * centres[labels[s:s + 1024]] + np.float32(3.0)
  return features, labels


def current_rss_mb():
  """Resident set size now (VmRSS of /proc/self/status), in MiB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError("VmRSS not found in /proc/self/status")


def run_ours(features):
  from tfexperts.select import knn
  return knn.loo_neighbors(features)[0][:, 0]


def run_sklearn(features):
  from sklearn import neighbors
  _, index = neighbors.NearestNeighbors(n_neighbors=2).fit(features).kneighbors(features)
  rows = np.arange(len(features))
  # Drop self by index; when self is not among the two, both are duplicates at distance 0.
  return np.where(index[:, 0] == rows, index[:, 1], index[:, 0])


def run_faiss(features):
  import faiss
  index = faiss.IndexFlatL2(features.shape[1])
  index.add(features)
  _, neighbours = index.search(features, 2)
  rows = np.arange(len(features))
  return np.where(neighbours[:, 0] == rows, neighbours[:, 1], neighbours[:, 0])


def gemm_floor_seconds(features):
  """Seconds of one full N x N x d float32 GEMM (X @ X.T), in row blocks into one buffer."""
  n = len(features)
  rows = max(1, min(n, GEMM_OUT_BYTES // (4 * n)))
  out = np.empty((rows, n), np.float32)
  start = time.perf_counter()
  for s in range(0, n, rows):
    e = min(n, s + rows)
    np.matmul(features[s:e], features.T, out=out[:e - s])
  return time.perf_counter() - start


def faiss_available():
  try:
    import faiss  # noqa: F401
    return True
  except ImportError:
    return False


def run_numpy(features):
  x = features.astype(np.float64)
  sq = np.sum(x * x, axis=1)
  dist = x @ x.T
  dist *= -2.0
  dist += sq[:, None]
  dist += sq[None, :]
  np.fill_diagonal(dist, np.inf)
  return np.argmin(dist, axis=1)


def worker(args):
  """Runs one method `--rounds` times in this process (for ours, each round followed by the GEMM
  floor); writes the neighbours (.npy) and measurements (.json): the best and every round's
  seconds, and the memory numbers (rss+ of the first round, before any floor ran; traced peak
  over all rounds, which repeat the same work)."""
  features, _ = make_data(args.n, args.dim, args.classes, args.seed)
  if args.method == "sklearn":
    import sklearn.neighbors  # noqa: F401  (imports are not part of the measurement)
  elif args.method == "faiss":
    import faiss  # noqa: F401
  else:
    import tfexperts.select.knn  # noqa: F401
  method = {"ours": run_ours, "sklearn": run_sklearn, "faiss": run_faiss,
            "numpy": run_numpy}[args.method]
  rss_before = current_rss_mb()
  rounds, floor_rounds, traced_peak = [], [], 0
  for _ in range(args.rounds):
    tracemalloc.start()
    start = time.perf_counter()
    neighbours = method(features)
    rounds.append(time.perf_counter() - start)
    traced_peak = max(traced_peak, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    if not floor_rounds:  # the first round: later ones repeat it, after the floor's own peak
      rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if args.method == "ours" and not args.skip_floor:  # after the RSS reading: not ours
      floor_rounds.append(gemm_floor_seconds(features))
  result = {"seconds": min(rounds), "rounds": rounds, "rss_extra_mb": rss_peak - rss_before,
            "traced_peak_mb": traced_peak / 2**20, "rss_before_mb": rss_before,
            "blas": blas_kernel()}
  if floor_rounds:
    result["gemm_seconds"], result["gemm_rounds"] = min(floor_rounds), floor_rounds
  np.save(args.out + ".npy", np.asarray(neighbours, np.int64))
  with open(args.out + ".json", "w") as f:
    json.dump(result, f)


def measure(method, n, args, workdir):
  out = os.path.join(workdir, f"{method}-{n}")
  command = [sys.executable, os.path.abspath(__file__), "--worker", "--method", method,
             "--n", str(n), "--dim", str(args.dim), "--classes", str(args.classes),
             "--seed", str(args.seed), "--rounds", str(args.rounds), "--out", out]
  if args.skip_floor:
    command.append("--skip_floor")
  env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  if method == "faiss":
    # faiss-cpu wheels bundle an older OpenBLAS that falls back to its slow generic (Prescott)
    # kernel on CPUs it does not know; the Haswell kernel is its fastest valid choice here.
    env["OPENBLAS_CORETYPE"] = "Haswell"
  subprocess.run(command, check=True, env=env)
  with open(out + ".json") as f:
    result = json.load(f)
  result["neighbours"] = np.load(out + ".npy")
  return result


def _rounds(seconds):
  return "rounds " + " ".join(f"{s:.2f}" for s in seconds)


def main(args):
  sys.stdout.reconfigure(line_buffering=True)  # progress visible when redirected to a file
  sizes = [int(s) for s in args.sizes.split(",")]
  methods = [m for m in args.methods.split(",") if m]
  unknown = sorted(set(methods) - set(METHODS))
  if unknown or "ours" not in methods:
    raise SystemExit(f"--methods must include ours and name only {METHODS}. "
                     f"Received: --methods={args.methods}")
  if args.rounds < 1:
    raise SystemExit(f"--rounds must be at least 1. Received: --rounds={args.rounds}")
  if "faiss" in methods and not faiss_available():
    print("faiss skipped: faiss-cpu is not installed (pip install -e .[bench])")
    methods.remove("faiss")
  print(f"d={args.dim}, {args.classes} classes, float32 input, {os.cpu_count()} CPUs; rss+ = "
        "peak RSS growth during the method, traced = tracemalloc peak (NumPy/Python only)")
  print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  with tempfile.TemporaryDirectory() as workdir:
    for n in sizes:
      _, labels = make_data(n, 1, args.classes, args.seed)  # same labels as the workers' data
      matrix_gb = (n * n * 8 + n * args.dim * 8) / 2**30
      results = {}
      for method in methods:
        if method == "numpy" and matrix_gb > args.matrix_cap_gb:
          print(f"N={n:>6} numpy    skipped: the {n}x{n} float64 matrix needs {matrix_gb:.1f} GiB "
                f"> --matrix_cap_gb={args.matrix_cap_gb}")
          continue
        results[method] = measure(method, n, args, workdir)
      ours = results["ours"]
      for method, r in results.items():
        accuracy = float(np.mean(labels[r["neighbours"]] == labels))
        ratio = "" if method == "ours" else (
            f"  time x{r['seconds'] / ours['seconds']:.2f}, rss+ x"
            f"{r['rss_extra_mb'] / max(ours['rss_extra_mb'], 1e-9):.2f} vs ours")
        print(f"N={n:>6} {method:<8} {r['seconds']:8.2f} s  ({_rounds(r['rounds'])})  "
              f"rss+ {r['rss_extra_mb']:8.1f} MB  traced {r['traced_peak_mb']:8.1f} MB  "
              f"acc {accuracy:.4f}{ratio}")
        print(f"         BLAS in that process: {r['blas']}")
      if "gemm_seconds" in ours:
        print(f"N={n:>6} GEMM floor {ours['gemm_seconds']:6.2f} s  "
              f"({_rounds(ours['gemm_rounds'])}; one N x N x d float32 GEMM, "
              f"{2 * n * n * args.dim / ours['gemm_seconds'] / 1e9:.0f} GFLOP/s); ours / floor "
              f"x{ours['seconds'] / ours['gemm_seconds']:.2f}")
      for method, r in results.items():
        if method != "ours":
          differ = int(np.sum(r["neighbours"] != ours["neighbours"]))
          print(f"N={n:>6} {method} vs ours: {'agree' if differ == 0 else 'DISAGREE'} "
                f"({differ} of {n} neighbours differ)")


def parse(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="1000,10000,50000", help="comma-separated N values")
  parser.add_argument("--dim", type=int, default=2048)
  parser.add_argument("--classes", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--methods", default=",".join(METHODS),
                      help=f"comma-separated subset of {METHODS} (ours is required)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="runs of each method in its process, the best one reported (ours "
                      "and the GEMM floor alternate, so a change in the machine's speed hits "
                      "both alike)")
  parser.add_argument("--skip_floor", action="store_true",
                      help="do not time the GEMM floor (it takes as long as ours, or longer)")
  parser.add_argument("--matrix_cap_gb", type=float, default=8.0,
                      help="skip the full-matrix NumPy method above this many GiB")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
  parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


if __name__ == "__main__":
  parsed = parse()
  worker(parsed) if parsed.worker else main(parsed)
