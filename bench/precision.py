"""Throughput of BiT R50x1 per compute precision, beside Keras' ResNet50V2 at the same precision.

In one run, on the same random images, for each precision (float32, bfloat16, and float16 where
a GPU is present) it measures images/s of
  forward   the feature path's model (tfexperts.hub.native: kernels weight-standardized once,
            GroupNorms inference-only, a tf.function per static batch shape, no XLA), batch
            --batch at --size px: the pre-logits `bin/select_expert --precision=P` computes
  limit     keras.applications.ResNet50V2 (no GroupNorm) at the same precision: the limit row
  train     one fine-tuning step (SGD, momentum 0.9, float32 head and loss; float16 with loss
            scaling) of R50x1 + a 10-class head, batch --train_batch, the step
            `bin/vtab_eval --precision=P` runs
then every rate divided by the float32 rate of the same row. Each row is timed in --rounds
interleaved rounds; the best round is kept. Run it with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset
(they do not touch TensorFlow's oneDNN kernels, but the BLAS line shows what NumPy would use).

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/precision.py [--batch 32]
         [--size 224] [--train_batch 16] [--seconds 8] [--rounds 2]
"""
import argparse
import os
import time

import keras
import tensorflow as tf

from tfexperts import precision as precision_lib
from tfexperts.models import bit
from tfexperts.models import layers as bit_layers

from _common import blas_kernel  # pylint: disable=wrong-import-order  (bench/ is on sys.path)


def throughput(fn, args, count, seconds):
  """images/s of `fn(*args)` over about `seconds` after two warm-up calls."""
  for _ in range(2):
    tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds or calls < 2:
    tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    calls += 1
  return calls * count / (time.perf_counter() - start)


def _r50x1_copy(source, precision, size):
  """An R50x1 built under `precision`'s policy holding `source`'s weights."""
  with precision_lib.policy_scope(precision):
    model = bit.create_model("r50x1")
    model.build((None, size, size, 3))
  for target, value in zip(model.variables, source.variables):
    target.assign(value)
  return model


def forward_fn(source, precision, size):
  """The feature path's inference model of `source`'s weights at `precision`."""
  model = _r50x1_copy(source, precision, size)
  bit_layers.freeze_standardization(model)
  return tf.function(lambda x: model(x)["pre_logits"], autograph=False)


def limit_fn(precision, size):
  with precision_lib.policy_scope(precision):
    model = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg",
                                          input_shape=(size, size, 3))
  return tf.function(lambda x: model(x * 2.0 - 1.0), autograph=False)


def train_fn(source, precision, size):
  """One SGD step of R50x1 + a float32 10-class head at `precision`."""
  model = _r50x1_copy(source, precision, size)
  head = keras.layers.Dense(10, dtype="float32")
  head.build((None, model.feature_dim))
  optimizer = keras.optimizers.SGD(0.001, momentum=0.9)
  if precision == "float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  variables = model.trainable_variables + head.trainable_variables
  optimizer.build(variables)

  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = head(model(images, training=True)["pre_logits"])
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
      scaled = optimizer.scale_loss(loss) if precision == "float16" else loss
    optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
    return loss
  return tf.function(step, autograph=False)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--train_batch", type=int, default=16)
  parser.add_argument("--seconds", type=float, default=8.0)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--rows", default="forward,limit,train")
  args = parser.parse_args()
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
  print(f"BLAS: {blas_kernel()}", flush=True)
  precisions = ["float32", "bfloat16"] + (["float16"] if tf.config.list_physical_devices("GPU")
                                          else [])
  for p in precisions:
    notice = precision_lib.device_notice(p)
    if notice:
      print(f"notice: {notice}")
  rows = args.rows.split(",")
  source = bit.create_model("r50x1")
  source.build((None, args.size, args.size, 3))
  images = tf.random.uniform((args.batch, args.size, args.size, 3))
  train_images = images[:args.train_batch]
  labels = tf.zeros([args.train_batch], tf.int32)
  fns = {}
  for p in precisions:
    if "forward" in rows:
      fns["forward", p] = (forward_fn(source, p, args.size), (images,), args.batch)
    if "limit" in rows:
      fns["limit", p] = (limit_fn(p, args.size), (images,), args.batch)
    if "train" in rows:
      fns["train", p] = (train_fn(source, p, args.size), (train_images, labels),
                         args.train_batch)
  rates = {}
  for round_index in range(args.rounds):
    for key, (fn, fn_args, count) in fns.items():
      rate = throughput(fn, fn_args, count, args.seconds)
      rates[key] = max(rates.get(key, 0.0), rate)
      print(f"  round {round_index + 1} {key[0]:8s} {key[1]:9s} {rate:7.2f} images/s  (load "
            f"{os.getloadavg()[0]:.2f})", flush=True)
  print(f"R50x1 forward batch {args.batch} at {args.size} px, train step batch "
        f"{args.train_batch}; best of {args.rounds} rounds; images/s and / float32:")
  for (row, p), rate in rates.items():
    print(f"{row:8s} {p:9s} {rate:8.2f}   x{rate / rates[row, 'float32']:.2f}")
  if "forward" in rows and "limit" in rows:
    for p in precisions:
      print(f"forward / limit at {p}: {rates['forward', p] / rates['limit', p]:.3f}")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
