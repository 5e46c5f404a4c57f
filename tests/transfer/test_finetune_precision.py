"""Fine-tuning at a reduced precision (issue 26 item 4): the module rebuilt under the mixed
policy trains; a bfloat16 run ends inside the float32 run's 95% Wilson interval, and a float16
run trains with dynamic loss scaling (on CPU)."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.data import tasks
from tfexperts.hub import load as hub_load
from tfexperts.transfer import finetune
from tfexperts.transfer import stats


def _spec(handle, directory, data_dir, precision):
  return finetune.RunSpec(expert=hub_load.reference(handle), task=tasks.get_task("shapes_fine_tiny"),
                          train_split="train800", eval_split="val200", learning_rate=3.2,
                          steps=30, batch_size=16, resolution=32, seed=0,
                          directory=str(directory), data_dir=data_dir, precision=precision)


@pytest.fixture(scope="module")
def baseline(exported):
  return os.path.join(exported.collection_dir, "baseline", "1")


def test_bfloat16_fine_tune_ends_inside_the_float32_interval(tmp_path, baseline,
                                                             offline_data_dir):
  strategy = tf.distribute.get_strategy()
  cache = finetune.ModelCache()
  f32 = finetune.run(_spec(baseline, tmp_path / "f32", offline_data_dir, "float32"), strategy,
                     cache)
  bf16 = finetune.run(_spec(baseline, tmp_path / "bf16", offline_data_dir, "bfloat16"), strategy,
                      cache)
  model = cache.model
  assert model.expert.compute_dtype == "bfloat16" and model.head.compute_dtype == "float32"
  assert all(v.dtype == "float32" for v in model.variables)
  assert (f32["precision"], bf16["precision"]) == ("float32", "bfloat16")
  low, high = stats.wilson_interval(f32["num_correct"], f32["num_eval_examples"])
  print(f"\nshapes_fine_tiny val200 after 30 steps: float32 {f32['accuracy']:.3f} "
        f"[{low:.3f}, {high:.3f}], bfloat16 {bf16['accuracy']:.3f}")
  # Measured 2026-12-03: float32 0.185 [0.137, 0.245], bfloat16 0.200. (30 steps leave the tiny
  # baseline near chance; a longer run would make this check sharper.)
  assert low <= bf16["accuracy"] <= high


def test_float16_fine_tune_runs_with_loss_scaling(tmp_path, baseline, offline_data_dir,
                                                  monkeypatch):
  created = []

  class Recorded(keras.optimizers.LossScaleOptimizer):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      created.append(self)

  monkeypatch.setattr(keras.optimizers, "LossScaleOptimizer", Recorded)
  cache = finetune.ModelCache()
  result = finetune.run(_spec(baseline, tmp_path / "f16", offline_data_dir, "float16"),
                        tf.distribute.get_strategy(), cache)
  assert len(created) == 1
  optimizer = created[0]
  assert result["precision"] == "float16" and np.isfinite(result["accuracy"])
  # Dynamic loss scaling ran: the scale moved from its initial 2**15 (down on overflow, or up
  # after enough finite steps) or stayed there with its growth counter counting steps.
  assert (float(optimizer.dynamic_scale.numpy()) != 2.0 ** 15
          or int(optimizer.step_counter.numpy()) > 0)
  assert cache.model.expert.compute_dtype == "float16"
  assert cache.steps.parts is None  # a loss-scaled run's parts are never kept for reuse
