"""Resuming a run skips what it consumed before decoding, and still continues bit-identically."""
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.data import pipeline
from tfexperts.data import preprocess as pp
from tfexperts.train import loop

NUM_RECORDS, NUM_CLASSES, SEED = 40, 3, 7
GLOBAL_BATCH, TOTAL_STEPS, INTERRUPTED_AT = 4, 40, 20


def _encoded_records():
  """`{"image": PNG bytes, "label": int32}` records: real encoded 8x8 images, as tfds stores them."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, NUM_CLASSES, NUM_RECORDS).astype("int32")
  pixels = rng.integers(0, 256, (NUM_RECORDS, 8, 8, 3)).astype("uint8")
  pngs = [tf.io.encode_png(p).numpy() for p in pixels]
  return tf.data.Dataset.from_tensor_slices({"image": pngs, "label": labels})


class DecodeCounter:
  """A preprocessing function that decodes as usual and records the stream seed of each record it
  decodes (the per-example seed `pipeline.finish` attaches identifies the stream position)."""

  def __init__(self):
    self.decoded = []
    self._decode = pp.get_preprocess_fn("decode|value_range(0, 1)")

  def _record(self, seed):
    self.decoded.append(tuple(seed.numpy().tolist()))
    return 0

  def __call__(self, features):
    done = tf.py_function(self._record, [features[pp.SEED_KEY]], tf.int32)
    with tf.control_dependencies([done]):
      features = dict(features, label=tf.identity(features["label"]))
    return self._decode(features)


def _stream_seeds(count):
  """The per-example seeds of the first `count` positions of the stream, in stream order."""
  seeds = tf.data.Dataset.random(seed=SEED).batch(2).take(count)
  return [tuple(s.tolist()) for s in seeds.as_numpy_iterator()]


def _task(counter):
  def make_dataset(ctx, per_replica_batch, start_step):
    ds = pipeline.finish(_encoded_records(), counter, shuffle_buffer=16, repeat=True, seed=SEED,
                         **loop.resumed_input(ctx, per_replica_batch, start_step))
    return ds.map(lambda f: {"image": f["image"], "label": f["label"]})

  def make_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES)])
    model.build((None, 8, 8, 3))
    return model

  return loop.TrainTask("counted", NUM_CLASSES, make_model, make_dataset,
                        lambda model, batch: model(batch["image"]))


def _config():
  return loop.LoopConfig(total_steps=TOTAL_STEPS, global_batch_size=GLOBAL_BATCH,
                         base_lr=0.05 * 512 / GLOBAL_BATCH, checkpoint_every=INTERRUPTED_AT,
                         log_every=10)


def test_resume_decodes_only_unconsumed_records_and_matches_an_uninterrupted_run(tmp_path):
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  straight_counter = DecodeCounter()
  straight, _ = loop.train(strategy, _task(straight_counter), _config(), str(tmp_path / "a"))
  # A run killed after its step-6 checkpoint: only that checkpoint survives.
  killed = tmp_path / "killed"
  killed.mkdir()
  for name in os.listdir(tmp_path / "a"):
    if name.startswith(f"ckpt-{INTERRUPTED_AT}."):
      shutil.copy(tmp_path / "a" / name, killed / name)
  (killed / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{INTERRUPTED_AT}"\n')
  assert loop.checkpointed_step(str(killed)) == INTERRUPTED_AT

  resumed_counter = DecodeCounter()
  resumed, history = loop.train(strategy, _task(resumed_counter), _config(), str(killed))
  assert history["start_step"] == INTERRUPTED_AT and history["final_step"] == TOTAL_STEPS
  for a, b in zip(straight.weights, resumed.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())

  consumed, total = INTERRUPTED_AT * GLOBAL_BATCH, TOTAL_STEPS * GLOBAL_BATCH
  seeds = _stream_seeds(total + 64)
  assert len(set(seeds)) == len(seeds)
  assert set(straight_counter.decoded) >= set(seeds[:total])
  decoded_after = set(resumed_counter.decoded)
  assert len(decoded_after) == len(resumed_counter.decoded)  # no record decoded twice
  assert not decoded_after & set(seeds[:consumed])  # nothing consumed before the restart
  assert decoded_after >= set(seeds[consumed:total])  # everything the remaining steps needed
  assert decoded_after <= set(seeds)  # beyond that, only the prefetch's read-ahead
  # Before: the first run decoded the whole stream it trained on; after: only the rest (plus
  # read-ahead), where skipping decoded batches would have decoded at least `total` again.
  print(f"decoded: uninterrupted run {len(straight_counter.decoded)} for {total} consumed; "
        f"resumed at {consumed}: {len(resumed_counter.decoded)} for {total - consumed} consumed")
  assert len(straight_counter.decoded) >= total
  assert total - consumed <= len(resumed_counter.decoded) < total


@pytest.mark.parametrize("pipelines,replicas", [(1, 1), (1, 2), (2, 2), (2, 4)])
def test_resumed_pipelines_read_the_global_stream_from_the_start_step(pipelines, replicas):
  # Every pipeline's share, interleaved by replica, is the global stream from `start` batches on.
  per_replica, start = 2, 3
  stream = list(range(200))
  global_batches = [stream[i:i + per_replica] for i in range(0, len(stream), per_replica)]
  for index in range(pipelines):
    ctx = tf.distribute.InputContext(pipelines, index, replicas)
    kwargs = loop.resumed_input(ctx, per_replica, start)
    ds = pipeline.finish(tf.data.Dataset.from_tensor_slices({"x": stream}),
                         pp.get_preprocess_fn(None), **kwargs)
    got = [b["x"].tolist() for b in ds.take(4).as_numpy_iterator()]
    # Pipeline `index` holds replicas index*r/n ... of each step; its k-th batch is global
    # per-replica batch start*replicas + index + k*pipelines.
    expected = [global_batches[start * replicas + index + k * pipelines] for k in range(4)]
    assert got == expected
