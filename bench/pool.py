"""Benchmark: an expert pool at the paper's shape (48 R50x1 adapter experts, 224 px, 1000 images).

Simulated on this machine: the weights are untrained (a seeded random R50x1 backbone, adapters
with small random rows so the experts differ), and the task is the offline `shapes_fine_tiny`
train800val200 split (1000 images) resized to 224 px. Two ways to ship the pool are compared:
  bank      one SavedModel holding all 48 experts, routed per image by expert id (export_bank)
  separate  48 single-expert SavedModels; to save time one expert is exported and copied 47 times
            (identical weights change nothing for load time, disk, memory or throughput)
Each runs in a fresh subprocess through select_expert's path (`selection.score` with the knn
proxy: `FeatureSource.features` -> `features.cached_features` -> `features.embed`, feature cache
off), on a budget: `--measure_experts` experts on `--images` sampled images each (decoded and
resized as the task does). It prints the measured numbers and the projection to the full pool
(all experts, all task images) on this machine:
  load      seconds to load (and check) the modules the pool needs (bank: 1; separate: one per
            expert, measured for the sampled experts and scaled linearly)
  rss       resident memory added by loading those modules, and the process's peak (VmHWM)
  disk      bytes on disk of the whole pool
  img*exp/s images x experts per second of feature extraction
  full pool projected wall time: load + 48 x 1000 / (img*exp/s)
Modules are written to a temp directory (removed at the end; the separate pool takes ~4.5 GB).

Usage: python bench/pool.py --pool_dir=/tmp/pool --prepare_only    # export (slow, no lock needed)
       flock /tmp/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
         python bench/pool.py --pool_dir=/tmp/pool [--experts 48] [--images 64] \\
         [--measure_experts 3] [--seconds 600]; rm -r /tmp/pool
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import blas_kernel  # pylint: disable=g-import-not-at-top,wrong-import-position
from knn import current_rss_mb  # pylint: disable=g-import-not-at-top,wrong-import-position
TASK, SPLIT = "shapes_fine_tiny", "train800val200"


def peak_rss_mb():
  """Peak resident set size of this process (VmHWM; ru_maxrss would carry the parent's), in MiB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError("VmHWM not found in /proc/self/status")


def disk_bytes(path):
  """Total size of the files under `path`."""
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _pool_paths(root, num_experts):
  return (os.path.join(root, "bank", "1"),
          [os.path.join(root, "separate", f"expert{e:02d}", "1") for e in range(num_experts)])


def export_pool(root, num_experts, resolution, seed):
  """Writes the bank module and the separate modules under `root`; returns their handles."""
  import numpy as np
  from tfexperts import artifacts
  from tfexperts.hub import export
  from tfexperts.hub import metadata as metadata_lib
  from tfexperts.models import adapters
  from tfexperts.models import bit
  import keras
  keras.utils.set_random_seed(seed)
  bank = adapters.create_adapter_experts(bit.create_model("r50x1"), num_experts)
  rng = np.random.default_rng(seed)
  for v in bank.trainable_weights:  # untrained, but every expert different (A2 starts at zero)
    if v.path.endswith("kernel"):
      v.assign(rng.normal(0.0, 0.02, v.shape).astype("float32"))
  experts = [artifacts.ExpertInfo(expert_id=e, name=f"expert{e:02d}", node=f"expert{e:02d}",
                                  num_images=1000, label_prior=None, slices="semantic")
             for e in range(num_experts)]
  metadata = metadata_lib.build("adapter_bank", "adapter_bank", bank, experts=experts,
                                resolution=resolution)
  start = time.perf_counter()
  bank_path = export.export_bank(bank, os.path.join(root, "bank", "1"), metadata)
  print(f"exported the bank module in {time.perf_counter() - start:.0f}s", flush=True)
  start = time.perf_counter()
  first = os.path.join(root, "separate", "expert00", "1")
  single = bank.extract_expert(0)
  export.export_expert(single, first, metadata_lib.build("adapter", "expert00", single,
                                                         expert_id=0, resolution=resolution))
  separate = [first]
  for e in range(1, num_experts):
    path = os.path.join(root, "separate", f"expert{e:02d}", "1")
    shutil.copytree(first, path)
    separate.append(path)
  print(f"exported 1 separate module and copied it {num_experts - 1} times in "
        f"{time.perf_counter() - start:.0f}s", flush=True)
  return bank_path, separate


class _BankExpert:
  """One expert of a loaded bank, looking like a `hub.load.Expert` to the selection code."""

  def __init__(self, bank, expert_id):
    from tfexperts.hub import metadata as metadata_lib
    self.bank, self.expert_id = bank, expert_id
    self.name = f"expert{expert_id:02d}"
    self.handle = f"{bank.handle}#{expert_id}"
    self.content_id = f"{bank.content_id}#{expert_id}"  # the feature cache key's module
    self.metadata = metadata_lib.ModuleMetadata.absent(module=self.name, kind="adapter")
    self.kind = "adapter"

  @property
  def module(self):
    return self.bank.module

  def embed(self, images):
    import tensorflow as tf
    ids = tf.fill([tf.shape(images)[0]], tf.constant(self.expert_id, tf.int32))
    return self.bank.embed(images, ids)


def measure(mode, handles, args):
  """In this (fresh) process: load the pool's modules and score the sampled experts with knn."""
  import tensorflow as tf
  from tfexperts.data import builders  # pylint: disable=unused-import
  from tfexperts.data import tasks
  from tfexperts.hub import load as hub_load
  from tfexperts.select import selection

  class SampledSource(selection.FeatureSource):
    """The task's images, only the first `images` of them (decoded and resized as usual)."""
    sample_images = args.images  # not `images`: FeatureSource keeps its ImageStore there

    def _dataset(self, resolution):
      make = super()._dataset(resolution)
      return lambda: make().unbatch().take(self.sample_images).batch(self.batch_size)

  task = tasks.get_task(TASK)
  source = SampledSource(task, SPLIT, args.data_dir, args.resolution, args.batch)
  # tfds and tf.data start-up, outside timings
  source._dataset(args.resolution)().take(1).get_single_element()
  rss_before = current_rss_mb()
  start = time.perf_counter()
  if mode == "bank":
    bank = hub_load.load_bank(handles[0])
    experts = [_BankExpert(bank, e) for e in range(args.measure_experts)]
  else:
    experts = [hub_load.load_expert(h) for h in handles[:args.measure_experts]]
  load_seconds = time.perf_counter() - start
  rss_loaded = current_rss_mb() - rss_before
  budget_start = time.perf_counter()
  measured, embed_seconds = 0, 0.0
  for expert in experts:  # one at a time, so the --seconds budget can stop early
    start = time.perf_counter()
    scores, _ = selection.score(selection.Candidates([expert]), source, ["knn"])
    embed_seconds += time.perf_counter() - start
    measured += 1
    assert len(scores["knn"]) == 1
    if measured >= 2 and time.perf_counter() - budget_start > args.seconds:
      break
  images = source.stats.images_embedded // measured
  # Each expert's pass has a fixed part (tracing, pipeline start, kNN) besides its per-image
  # part; one more pass on half the images of the last expert separates the two.
  source.sample_images = args.images // 2
  start = time.perf_counter()
  selection.score(selection.Candidates([experts[measured - 1]]), source, ["knn"])
  half_seconds = time.perf_counter() - start
  if mode == "separate":  # loads of experts the budget left unscored do not count
    load_seconds *= measured / len(experts)
    rss_loaded *= measured / len(experts)
  return {"mode": mode, "loaded_modules": 1 if mode == "bank" else measured,
          "load_seconds": load_seconds, "rss_loaded_mb": rss_loaded,
          "peak_rss_mb": peak_rss_mb(), "experts_measured": measured, "images": images,
          "seconds": embed_seconds, "half_images": source.sample_images,
          "half_seconds": half_seconds,
          "tf": tf.__version__}


def _child(mode, handles, args):
  cmd = [sys.executable, os.path.abspath(__file__), "--_child", mode, "--_handles",
         ",".join(handles), *(f"--{k}={getattr(args, k)}" for k in
                              ("images", "measure_experts", "seconds", "resolution", "batch",
                               "data_dir"))]
  env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(out.stdout[-3000:] + out.stderr[-5000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experts", type=int, default=48, help="Pool size.")
  parser.add_argument("--images", type=int, default=64, help="Sampled images per expert.")
  parser.add_argument("--measure_experts", type=int, default=3,
                      help="Experts scored per configuration (separate: also modules loaded).")
  parser.add_argument("--seconds", type=float, default=600.0,
                      help="Budget per configuration for scoring (at least 2 experts).")
  parser.add_argument("--resolution", type=int, default=224)
  parser.add_argument("--batch", type=int, default=32, help="Embedding batch size.")
  parser.add_argument("--task_images", type=int, default=1000, help="Images of the full task.")
  parser.add_argument("--data_dir", default="", help="tfds data dir (default: built in a temp dir)")
  parser.add_argument("--pool_dir", default="",
                      help="Keep the modules here (reused when present; default: a temp dir, "
                      "removed at the end).")
  parser.add_argument("--prepare_only", action="store_true",
                      help="Only write the pool to --pool_dir (no measuring, so no bench lock "
                      "needed).")
  parser.add_argument("--_child", default="", help=argparse.SUPPRESS)
  parser.add_argument("--_handles", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    print(json.dumps(measure(args._child, args._handles.split(","), args)))  # pylint: disable=protected-access
    return
  if args.measure_experts < 2 or args.measure_experts > args.experts:
    parser.error(f"--measure_experts must be in [2, --experts]. Received: {args.measure_experts}")
  print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
  print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
  root = args.pool_dir or tempfile.mkdtemp(prefix="tfexperts_pool_")
  try:
    if not args.data_dir:
      from tfexperts.data import offline
      args.data_dir = os.path.join(root, "tfds")
      offline.prepare_offline_datasets(args.data_dir, "tfexperts_shapes_fine/tiny", print_fn=None)
    bank_path, separate = _pool_paths(root, args.experts)
    if not all(os.path.exists(p) for p in [bank_path, *separate]):
      bank_path, separate = export_pool(root, args.experts, args.resolution, seed=0)
    if args.prepare_only:
      print(f"pool written to {root}")
      return
    disk = {"bank": disk_bytes(os.path.dirname(bank_path)),
            "separate": disk_bytes(os.path.join(root, "separate"))}
    print(f"pool: {args.experts} R50x1 adapter experts, {args.resolution} px, task {TASK}/{SPLIT} "
          f"({args.task_images} images), sampled {args.images} images x "
          f"{args.measure_experts} experts per configuration, batch {args.batch}")
    rows = {"bank": _child("bank", [bank_path], args), "separate": _child("separate", separate,
                                                                           args)}
  finally:
    if not args.pool_dir:
      shutil.rmtree(root, ignore_errors=True)
  print(f"\n{'':9s} {'load s':>7s} {'rss+ MiB':>8s} {'peak MiB':>8s} {'disk MB':>7s} "
        f"{'img*exp/s':>9s} {'steady':>7s} {'fixed s':>7s} {'measured':>17s} "
        f"{'full pool (proj.)':>17s}")
  projected = {}
  for mode, r in rows.items():
    rate = r["images"] * r["experts_measured"] / r["seconds"]
    per_expert = r["seconds"] / r["experts_measured"]
    per_image = max((per_expert - r["half_seconds"]) / (r["images"] - r["half_images"]), 1e-9)
    fixed = max(per_expert - per_image * r["images"], 0.0)
    scale = args.experts / r["loaded_modules"] if mode == "separate" else 1.0
    load_full, rss_full = r["load_seconds"] * scale, r["rss_loaded_mb"] * scale
    total = load_full + args.experts * (fixed + args.task_images * per_image)
    projected[mode] = {"load": load_full, "rss": rss_full, "rate": 1 / per_image, "total": total}
    print(f"{mode:9s} {load_full:7.1f} {rss_full:8.0f} {r['peak_rss_mb']:8.0f} "
          f"{disk[mode] / 1e6:7.0f} {rate:9.2f} {1 / per_image:7.2f} {fixed:7.1f} "
          f"{r['experts_measured']:3d}x{r['images']:3d} in {r['seconds']:5.0f}s "
          f"{total / 3600:15.2f} h")
    if scale != 1.0:
      print(f"{'':9s} (load and rss+ scaled from {r['loaded_modules']} loaded modules: "
            f"{r['load_seconds']:.1f}s, {r['rss_loaded_mb']:.0f} MiB)")
  print("img*exp/s: measured images x experts per second, fixed costs included; steady: from "
        "the extra half-size pass, per-image only; fixed: per-expert seconds besides images.\n"
        f"full pool: {args.experts} experts x {args.task_images} images = load + experts x "
        "(fixed + images / steady); peak MiB: VmHWM of the measuring process.")
  b, s = projected["bank"], projected["separate"]
  print(f"\nratios separate / bank: load {s['load'] / b['load']:.1f}x, memory "
        f"{s['rss'] / max(b['rss'], 1e-9):.1f}x, disk {disk['separate'] / disk['bank']:.1f}x, "
        f"steady throughput {s['rate'] / b['rate']:.2f}x, full-pool wall time "
        f"{s['total'] / b['total']:.2f}x")
  print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
  main()
