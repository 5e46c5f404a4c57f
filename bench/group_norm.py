"""Where bfloat16 inference GroupNorm should run per example (`layers.PER_EXAMPLE_MIN_ELEMENTS`).

In one run, for bfloat16 maps `[--batch, h, w, c]` of R50x1's GroupNorm shapes (at 224 px and
smaller), it times the two inference paths of `layers.group_norm` (a tf.function each, ReLU
fused, best of --rounds): `per example` (oneDNN's fused batch-norm kernels one example at a time)
and `float32` (float32 arithmetic on the batch, rounded once), and prints their ratio and the
path the threshold picks. Per example wins only where the ratio float32 / per example is > 1.

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/group_norm.py [--batch 16]
         [--rounds 3] [--calls 20]
"""
import argparse
import time

import numpy as np
import tensorflow as tf

from tfexperts.models import layers

from _common import blas_kernel  # pylint: disable=wrong-import-order  (bench/ is on sys.path)

# (h, w, c) per example: R50x1's GroupNorm inputs at 224 px and at 112 px, and a 32 px map.
SHAPES = ((56, 56, 64), (56, 56, 256), (28, 28, 128), (28, 28, 512), (14, 14, 256),
          (14, 14, 1024), (7, 7, 512), (7, 7, 2048), (28, 28, 64), (16, 16, 16))


def _milliseconds(fn, x, calls):
  fn(x).numpy()
  start = time.perf_counter()
  for _ in range(calls):
    fn(x).numpy()
  return (time.perf_counter() - start) / calls * 1e3


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--calls", type=int, default=20)
  args = parser.parse_args()
  print(f"BLAS: {blas_kernel()}", flush=True)
  print(f"threshold: per example from {layers.PER_EXAMPLE_MIN_ELEMENTS} elements per example")
  print("h x w x c          elements  per example ms  float32 ms  float32/per example  picked")
  for h, w, c in SHAPES:
    x = tf.cast(tf.random.uniform([args.batch, h, w, c]), tf.bfloat16)
    fns = {}
    for per_example in (True, False):
      saved = layers.PER_EXAMPLE_MIN_ELEMENTS
      layers.PER_EXAMPLE_MIN_ELEMENTS = 0 if per_example else np.inf
      try:  # traced now, under the forced threshold
        fn = tf.function(lambda t, c=c: layers.group_norm(
            t, min(32, c), layers.GN_EPSILON, tf.ones([c]), tf.zeros([c]), relu=True,
            inference_only=True), autograph=False)
        fn(x)
      finally:
        layers.PER_EXAMPLE_MIN_ELEMENTS = saved
      fns[per_example] = fn
    best = {k: min(_milliseconds(fn, x, args.calls) for _ in range(args.rounds))
            for k, fn in fns.items()}
    elements = h * w * c
    picked = "per example" if elements >= layers.PER_EXAMPLE_MIN_ELEMENTS else "float32"
    print(f"{h:3d} x {w:3d} x {c:4d}  {elements:9d}  {best[True]:14.2f}  {best[False]:10.2f}  "
          f"{best[False] / best[True]:19.2f}  {picked}", flush=True)


if __name__ == "__main__":
  main()
