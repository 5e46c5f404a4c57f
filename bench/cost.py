"""Cost of kNN selection against fine-tuning every expert, at the paper's scale, on this machine.

Measures BiT R50x1 at 224 px: forward (pre-logits) images/s, training-step images/s (forward,
backward and an SGD-momentum update of every weight with a new head) and the kNN leave-one-out on
1000 x 2048 features; then prices, for a pool of K experts and a 1000-image task:
  selection = K x (embed 1000 images + kNN leave-one-out)
  fine-tune all = K x (the protocol's sweep + its final retrains + their evaluations)
and prints their ratio for the full default protocol (VTAB: lr {0.01, 0.001} x steps {2500, 10000}
at batch 512, then 3 retrains of the best; the best's steps are unknown beforehand, so both cases)
and for the demo's quick protocol (batch 32, 100 steps, 2 learning rates, 1 retrain). The ratio
does not depend on K: both sides are per expert.

Domain Adaptive Transfer (the paper's Sec. 6.6 comparison) is priced the same way: its upstream
fine-tuning is --dat_steps x --dat_batch training images (the budget is a flag: the paper does not
state DAT's), against kNN selection over --dat_experts experts (the paper: 240); both from the
throughputs measured in this run.

Usage: flock /tmp/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
         python bench/cost.py [--experts 48] [--task_size 1000] [--test_size 10000] [--seconds 8]
         [--dat_experts 240] [--dat_steps 10000] [--dat_batch 512]
         [--precision float32|bfloat16|float16]
Both sides are priced at --precision (R50x1 forward and training step as bench/precision.py
measures them, the binaries' `--precision` paths); run it at the fastest precision the machine
runs (bench/precision.py prints them side by side) to price selection at its fastest path.
"""
import argparse
import os
import subprocess
import time

import numpy as np
import tensorflow as tf

from tfexperts import demo
from tfexperts import precision as precision_lib
from tfexperts.models import bit
from tfexperts.select import knn
from tfexperts.transfer import cost
from tfexperts.transfer import protocol
from _common import blas_kernel  # pylint: disable=wrong-import-order  (bench/ is on sys.path)
from precision import forward_fn, throughput, train_fn  # pylint: disable=wrong-import-order


def forward_and_train_throughput(size, forward_batch, train_batch, seconds, precision):
  """(forward images/s, training-step images/s) of R50x1 at `size` px and `precision`: the
  feature path's inference model (bench/precision.py `forward_fn`) and an SGD step with a new
  float32 10-class head (`train_fn`), the paths `--precision` runs in the binaries."""
  source = bit.create_model("r50x1")
  source.build((None, size, size, 3))
  images = tf.random.uniform((max(forward_batch, train_batch), size, size, 3))
  labels = tf.zeros((train_batch,), tf.int32)
  forward_ips = throughput(forward_fn(source, precision, size), (images[:forward_batch],),
                           forward_batch, seconds)
  train_ips = throughput(train_fn(source, precision, size), (images[:train_batch], labels),
                         train_batch, seconds)
  return forward_ips, train_ips


def knn_seconds(task_size, dim=2048, classes=10, repeats=3):
  """Seconds of one exact kNN leave-one-out on `task_size` x `dim` features (best of repeats)."""
  rng = np.random.default_rng(0)
  features = rng.standard_normal((task_size, dim)).astype(np.float32)
  labels = rng.integers(0, classes, task_size)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    knn.loo_accuracy(features, labels)
    best = min(best, time.perf_counter() - start)
  return best


def _hours(seconds):
  return f"{seconds / 3600:10.1f} h" if seconds >= 3600 else f"{seconds:10.1f} s"


def report_line(name, config, forward_ips, train_ips, selection_seconds, args, best_steps):
  """Prints the cost of fine-tuning every expert under `config` and its ratio to selection."""
  images = cost.finetune_all_images(args.experts, config, best_steps=best_steps,
                                    test_size=args.test_size)
  seconds = images.seconds(train_ips, forward_ips)
  ratio = seconds / selection_seconds
  print(f"{name:44s} {images.train / 1e6:9.2f}M train imgs  {_hours(seconds)}  "
        f"ratio {ratio:10.0f}x  (10^{np.log10(ratio):.1f})")
  return ratio


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experts", type=int, default=48)
  parser.add_argument("--task_size", type=int, default=1000)
  parser.add_argument("--test_size", type=int, default=10000,
                      help="test images per final retrain (negligible next to training)")
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--forward_batch", type=int, default=16)
  parser.add_argument("--train_batch", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=8.0)
  parser.add_argument("--precision", default="float32", choices=precision_lib.PRECISIONS,
                      help="compute precision of both sides (the binaries' --precision); price "
                           "selection at the fastest one the machine runs")
  parser.add_argument("--dat_experts", type=int, default=240,
                      help="pool size kNN selection is priced at against DAT (paper: 240)")
  parser.add_argument("--dat_steps", type=int, default=10000,
                      help="DAT's upstream fine-tuning steps (an assumption; a flag)")
  parser.add_argument("--dat_batch", type=int, default=512)
  args = parser.parse_args()

  load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  print(f"load before: {load}")
  print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; "
        f"TF intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()} "
        f"(0 = all {os.cpu_count()} cores)")
  print(f"precision: {args.precision}")
  notice = precision_lib.device_notice(args.precision)
  if notice:
    print(f"notice: {notice}")
  forward_ips, train_ips = forward_and_train_throughput(args.size, args.forward_batch,
                                                        args.train_batch, args.seconds,
                                                        args.precision)
  knn_s = knn_seconds(args.task_size)
  load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  print(f"load after:  {load}")
  print(f"R50x1 @{args.size}px {args.precision} forward (batch {args.forward_batch}):    "
        f"{forward_ips:8.2f} images/s")
  print(f"R50x1 @{args.size}px {args.precision} train step (batch {args.train_batch}):    "
        f"{train_ips:8.2f} images/s "
        f"({forward_ips / train_ips:.1f}x a forward pass)")
  print(f"kNN leave-one-out, {args.task_size} x 2048:          {knn_s:8.3f} s")
  selection = (cost.knn_images(args.experts, args.task_size).seconds(train_ips, forward_ips)
               + args.experts * knn_s)
  print(f"\nPool of K={args.experts} experts, {args.task_size}-image task:")
  print(f"{'kNN selection (embed + leave-one-out)':44s} "
        f"{args.experts * args.task_size / 1e6:9.3f}M fwd imgs    {_hours(selection)}")
  full = protocol.ProtocolConfig()
  ratios = [report_line(f"fine-tune all, full protocol (best {s} steps)", full, forward_ips,
                        train_ips, selection, args, s) for s in sorted(full.steps)]
  quick = protocol.ProtocolConfig.quick(**demo.EVAL_PROTOCOL, resolution=args.size)
  quick_ratio = report_line("fine-tune all, demo quick protocol", quick, forward_ips, train_ips,
                            selection, args, None)
  print(f"\nThe paper reports kNN selection 2-3 orders of magnitude (100-1000x) cheaper than "
        f"fine-tuning every expert. Here: {min(ratios):.0f}x-{max(ratios):.0f}x under the full "
        f"default protocol (10^{np.log10(min(ratios)):.1f}-10^{np.log10(max(ratios)):.1f}), and "
        f"{quick_ratio:.0f}x under the demo's quick protocol (10^{np.log10(quick_ratio):.1f}).")
  dat_report(args, forward_ips, train_ips, knn_s)


def dat_report(args, forward_ips, train_ips, knn_s):
  """Prints DAT's upstream fine-tuning against kNN selection, at K and at --dat_experts."""
  dat = cost.Images(train=args.dat_steps * args.dat_batch).seconds(train_ips, forward_ips)
  print(f"\nDomain Adaptive Transfer, upstream fine-tuning {args.dat_steps} steps x "
        f"{args.dat_batch} images: {_hours(dat)}")
  for experts in sorted({args.experts, args.dat_experts}):
    knn_cost = (cost.knn_images(experts, args.task_size).seconds(train_ips, forward_ips)
                + experts * knn_s)
    print(f"  vs kNN selection over {experts:3d} experts ({_hours(knn_cost).strip()}): DAT costs "
          f"{dat / knn_cost:7.1f}x")
  print("The paper: kNN over 240 models is 500x-1000x faster than DAT's fine-tuning. The ratio "
        "here scales with --dat_steps x --dat_batch.")


if __name__ == "__main__":
  main()
