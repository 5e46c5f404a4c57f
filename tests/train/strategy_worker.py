"""Runs `loop.train` on synthetic data under a given strategy; used by the strategy tests.

Run as a separate process (logical devices and TF_CONFIG must be set before TF starts):
  python tests/train/strategy_worker.py compare_mirrored OUT.json
  TF_CONFIG=... python tests/train/strategy_worker.py multi_worker OUT.npz EXPORT_DIR
"""
import json
import os
import sys
import tempfile

import numpy as np

GLOBAL_BATCH = 16
NUM_CLASSES = 4


def synthetic_arrays(n=256, seed=0):
  """Images whose dominant colour channel encodes the class; returns (images, labels)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, n).astype("int32")
  colours = np.eye(4, 3)[labels][:, None, None, :]
  images = rng.uniform(size=(n, 32, 32, 3)) * 0.4 + colours * 0.6
  return images.astype("float32"), labels


def make_task():
  """A `TrainTask` over the synthetic arrays with a tiny BiT model (seeded)."""
  import keras
  import tensorflow as tf
  from tfexperts.data import pipeline
  from tfexperts.data import preprocess
  from tfexperts.models import bit
  from tfexperts.train import loop
  images, labels = synthetic_arrays()

  def make_dataset(ctx, per_replica_batch, start_step):
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    return pipeline.finish(ds, preprocess.get_preprocess_fn(None), repeat=True,
                           **loop.resumed_input(ctx, per_replica_batch, start_step))

  def make_model():
    keras.utils.set_random_seed(3)
    return bit.create_model("tiny", num_classes=NUM_CLASSES)

  return loop.TrainTask("synthetic", NUM_CLASSES, make_model, make_dataset,
                        lambda model, batch: model(batch["image"])["logits"])


def _config(steps):
  from tfexperts.train import loop
  return loop.LoopConfig(total_steps=steps, global_batch_size=GLOBAL_BATCH, base_lr=0.3,
                         warmup_steps=2, weight_decay=1e-4, checkpoint_every=steps, log_every=1)


def compare_mirrored(out_path):
  """Same run on one device and on MirroredStrategy over 2 logical CPUs; writes both loss lists."""
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from tfexperts.train import loop
  results = {}
  for name, strategy in (("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
                         ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    _, history = loop.train(strategy, make_task(), _config(8), tempfile.mkdtemp())
    results[name] = {"loss": [e["loss"] for e in history["log"]],
                     "replicas": strategy.num_replicas_in_sync}
  with open(out_path, "w") as f:
    json.dump(results, f)


def multi_worker(out_path, export_dir):
  """Trains 4 steps under MultiWorkerMirroredStrategy (TF_CONFIG); the chief exports the model as
  a hub module, then every worker embeds 37 images with it under the strategy. Writes this
  worker's weights, losses and features, and the module's features computed without a strategy."""
  import time
  import tensorflow as tf
  from tfexperts.hub import export
  from tfexperts.hub import metadata as metadata_lib
  from tfexperts.hub import load as hub_load
  from tfexperts.select import features
  from tfexperts.train import loop
  from tfexperts.train import strategy as strategy_lib
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  checkpoint_dir = os.path.join(os.path.dirname(out_path), "ckpt")
  model, history = loop.train(strategy, make_task(), _config(4), checkpoint_dir)
  module_path = os.path.join(export_dir, "synthetic", "1")
  if strategy_lib.is_chief(strategy):
    export.export_expert(model, module_path,
                         metadata_lib.build("baseline", "synthetic", model, resolution=32,
                                            with_logits=True), with_logits=True)
  deadline = time.time() + 300
  while not tf.io.gfile.exists(module_path) and time.time() < deadline:  # the chief's rename
    time.sleep(0.2)
  expert = hub_load.load_expert(module_path)
  images, labels = synthetic_arrays(37, seed=1)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
  embedded, embedded_labels = features.embed(expert.embed, dataset, strategy=strategy)
  np.savez(out_path, *[v.numpy() for v in model.weights],
           losses=np.array([e["loss"] for e in history["log"]]),
           replicas=strategy.num_replicas_in_sync, features=embedded, labels=embedded_labels,
           direct=expert.embed(images).numpy(), trained=model(images)["pre_logits"].numpy())


if __name__ == "__main__":
  {"compare_mirrored": compare_mirrored, "multi_worker": multi_worker}[sys.argv[1]](*sys.argv[2:])
