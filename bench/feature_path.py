"""Where the feature path loses time against its own model: interleaved rounds, ratios only.

On the same random images (batch 32, 224 px by default), images/s of
  model       the inference model `tfexperts.hub.native` holds (R50x1, kernels standardized once)
              as a tf.function with a static input signature (forward.py's "ours inference")
  native fn   the callable `NativeRunner.load` returns (input signature [None, None, None, 3])
  embed       `features.embed` of that callable over the batches as an in-memory tf.data dataset
each timed in `--rounds` interleaved rounds of `--batches` batches (wall and process CPU time),
then each row's ratio to "model". The native slot is built directly (no export, no check
features), which leaves out only the load; the features of the three rows are compared.

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/feature_path.py [--preset r50x1]
         [--size 224] [--batch 32] [--batches 3] [--rounds 3]
"""
import argparse
import os
import time

import numpy as np
import tensorflow as tf

from tfexperts.hub import native
from tfexperts.models import architecture
from tfexperts.models import bit
from tfexperts.select import features as features_lib


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="r50x1")
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--batches", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
  source = bit.create_model(args.preset)
  slot = native._Slot((architecture.describe(source), 0))  # pylint: disable=protected-access
  assert slot.assign([v.numpy() for v in source.variables])
  images = tf.random.uniform((args.batch, args.size, args.size, 3), seed=1)
  labels = np.zeros(args.batch, np.int64)
  model = tf.function(lambda x: slot.model(x)["pre_logits"], autograph=False,
                      input_signature=[tf.TensorSpec(images.shape, tf.float32)])
  dataset = tf.data.Dataset.from_tensors((images, labels)).repeat(args.batches)

  def repeat(fn):
    return lambda: [fn(images).numpy() for _ in range(args.batches)][-1]

  rows = {"model": repeat(model), "native fn": repeat(slot.features),
          "embed": lambda: features_lib.embed(slot.features, dataset, log_every_seconds=None)[0]}
  outputs = {name: run() for name, run in rows.items()}  # warm-up (traces)
  for name, output in outputs.items():
    difference = np.abs(output[-args.batch:] - outputs["model"]).max()
    print(f"{name}: max |features - model's| {difference}")
  wall, cpu = dict.fromkeys(rows, 0.0), dict.fromkeys(rows, 0.0)
  for _ in range(args.rounds):
    for name, run in rows.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      run()
      wall[name] += time.perf_counter() - start
      cpu[name] += time.process_time() - start_cpu
  count = args.rounds * args.batches * args.batch
  print(f"{args.preset}, batch {args.batch}, {args.size} px, {args.rounds} rounds x "
        f"{args.batches} batches")
  for name in rows:
    print(f"{name:<10} {count / wall[name]:8.2f} images/s  {count / cpu[name]:8.2f} images/CPU-s  "
          f"ratio / model {wall['model'] / wall[name]:.3f}")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
