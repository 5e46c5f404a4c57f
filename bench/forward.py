"""Feature-extraction throughput of BiT R50x1 against Keras' ResNet50V2 and the machine's matmul.

Prints images/s of our R50x1 (pre-logits, 224x224, batch 32) and of
`keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg")`, both as compiled
`tf.function`s, and the float32 matmul GFLOP/s of this machine, all measured in the same run, then:
  ratio 1 = ours images/s / ResNet50V2 images/s
  ratio 2 = ours achieved GFLOP/s (graph FLOPs per image x images/s) / matmul GFLOP/s

Usage: python bench/forward.py [--batch 32] [--size 224] [--seconds 20]
"""
import argparse
import time

import numpy as np
import tensorflow as tf

import keras
from tfexperts.models import bit


def graph_flops(fn, spec):
  """Float operations of one call of `fn` on `spec`, counted by TF's profiler on its graph."""
  graph = fn.get_concrete_function(spec).graph
  opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  opts["output"] = "none"
  return tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops


def throughput(fn, images, seconds):
  """Calls `fn(images)` for about `seconds` after 2 warm-up calls; returns images per second."""
  for _ in range(2):
    fn(images).numpy()
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds or calls < 3:
    fn(images).numpy()
    calls += 1
  return calls * images.shape[0] / (time.perf_counter() - start)


def matmul_gflops(n=2048, seconds=5.0):
  """Float32 GFLOP/s of an n x n matmul on this machine."""
  a = tf.random.normal((n, n))
  b = tf.random.normal((n, n))
  mm = tf.function(lambda: tf.matmul(a, b))
  mm().numpy()
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    mm().numpy()
    calls += 1
  return 2.0 * n ** 3 * calls / (time.perf_counter() - start) / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--seconds", type=float, default=20.0)
  args = parser.parse_args()

  images = tf.random.uniform((args.batch, args.size, args.size, 3))
  spec = tf.TensorSpec(images.shape, tf.float32)
  ours_model = bit.create_model("r50x1")
  ours = tf.function(lambda x: ours_model(x)["pre_logits"], input_signature=[spec])
  ref_model = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg",
                                            input_shape=(args.size, args.size, 3))
  ref = tf.function(lambda x: ref_model(x * 2.0 - 1.0), input_signature=[spec])

  flops_per_image = graph_flops(ours, spec) / args.batch
  gflops_machine = matmul_gflops()
  ours_ips = throughput(ours, images, args.seconds)
  ref_ips = throughput(ref, images, args.seconds)
  achieved = ours_ips * flops_per_image / 1e9
  print(f"threads: intra={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"cpus={len(tf.config.list_physical_devices('CPU'))}")
  print(f"matmul (2048^2, float32):          {gflops_machine:8.1f} GFLOP/s")
  print(f"BiT R50x1 graph FLOPs per image:   {flops_per_image / 1e9:8.2f} GFLOP")
  print(f"tfexperts BiT R50x1 pre-logits:    {ours_ips:8.2f} images/s  ({achieved:.1f} GFLOP/s)")
  print(f"keras.applications.ResNet50V2:     {ref_ips:8.2f} images/s")
  print(f"ratio ours / ResNet50V2:           {ours_ips / ref_ips:8.3f}")
  print(f"ratio ours GFLOP/s / matmul:       {achieved / gflops_machine:8.3f}")


if __name__ == "__main__":
  main()
