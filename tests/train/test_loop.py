"""The training loop's checkpoints: every model variable is saved and restores exactly."""
import numpy as np
import pytest
import tensorflow as tf

from tests.train import strategy_worker
from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.train import loop


def test_checkpoint_holds_every_model_variable_and_restores_them(tmp_path):
  task = strategy_worker.make_task()
  config = loop.LoopConfig(total_steps=2, global_batch_size=8, base_lr=0.3, checkpoint_every=2,
                           log_every=1)
  model, history = loop.train(tf.distribute.OneDeviceStrategy("/cpu:0"), task, config,
                              str(tmp_path / "ckpt"))
  assert history["final_step"] == 2
  # Step 1 (no warm-up, before the first decay) trains at the rate at batch 512 scaled to 8.
  assert history["log"][0]["lr"] == pytest.approx(0.3 * 8 / 512, rel=1e-7)
  latest = tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
  saved = [k for k in tf.train.load_checkpoint(latest).get_variable_to_shape_map()
           if k.startswith("model_variables/")]
  assert len(saved) == len(model.weights)
  fresh = bit.create_model("tiny", num_classes=strategy_worker.NUM_CLASSES)
  loop.restore_model(fresh, latest)
  for a, b in zip(model.weights, fresh.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bank_with_frozen_backbone_restores_its_adapters(tmp_path):
  bank = adapters.create_adapter_experts(bit.create_model("tiny", num_classes=3), 2)
  for v in bank.trainable_weights:
    v.assign(np.random.default_rng(0).normal(size=v.shape).astype("float32"))
  path = tf.train.Checkpoint(model_variables=loop.model_variables(bank)).save(str(tmp_path / "c"))
  other = adapters.create_adapter_experts(bit.create_model("tiny", num_classes=3), 2)
  loop.restore_model(other, path)
  for a, b in zip(bank.weights, other.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
