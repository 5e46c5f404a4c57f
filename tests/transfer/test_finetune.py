"""finetune.run: consecutive runs of one expert passed one `ModelCache` reuse its model and traced
step, from the module's weights, with the results of a fresh run; each trains at the learning rate
at batch 512 scaled to its batch."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tfexperts.data import tasks
from tfexperts.hub import load as hub_load
from tfexperts.transfer import finetune


def _spec(handle, learning_rate, directory, data_dir):
  return finetune.RunSpec(expert=hub_load.reference(handle), task=tasks.get_task("shapes_fine_tiny"),
                          train_split="train800", eval_split="val200",
                          learning_rate=learning_rate, steps=3, batch_size=8, resolution=32,
                          seed=0, directory=str(directory), data_dir=data_dir)


def _trained_weights(directory):
  """Every variable of the run's final checkpoint (model, optimizer, step) by name."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(directory, "ckpt")))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_reused_model_starts_from_the_module_weights(tmp_path, exported, offline_data_dir,
                                                    capsys):
  strategy = tf.distribute.get_strategy()
  baseline = os.path.join(exported.collection_dir, "baseline", "1")
  adapter = os.path.join(exported.collection_dir, "adapter_animal", "1")
  cache = finetune.ModelCache()

  # 6.4 at batch 512 is 0.1 at batch 8: the first logged step (no warm-up, before the first
  # decay) trains at exactly that rate.
  first = finetune.run(_spec(baseline, 6.4, tmp_path / "a", offline_data_dir), strategy, cache)
  model, traced = cache.model, cache.steps.parts[3]
  predict = cache.prediction_step(strategy)
  out = capsys.readouterr().out
  assert "step 1/3 loss" in out and f" lr {6.4 * 8 / 512:.2e} " in out, out
  assert float(cache.steps.parts[1](0)) == pytest.approx(0.1, rel=1e-7)
  # The module's upstream head is trainable but outside the pre-logits path: named, left as is.
  unreached = [line for line in out.splitlines() if "no gradient" in line]
  assert len(unreached) == 1 and "2 trainable variables" in unreached[0], unreached
  assert "head" in unreached[0], unreached
  finetune.run(_spec(baseline, 64.0, tmp_path / "b", offline_data_dir), strategy, cache)
  again = finetune.run(_spec(baseline, 6.4, tmp_path / "c", offline_data_dir), strategy, cache)
  assert cache.model is model and cache.steps.model is model
  assert traced.experimental_get_tracing_count() == 1  # three runs, one trace
  assert cache.prediction_step(strategy) is predict and list(cache.derived_objects.values()) == [
      predict]
  # Trained twice in between: only a reset of the model, the optimizer, the step and the
  # schedule gives the fresh run's result, to the bit.
  assert again["correct_bits"] == first["correct_bits"]
  assert again["accuracy"] == first["accuracy"]
  want, got = _trained_weights(tmp_path / "a"), _trained_weights(tmp_path / "c")
  assert sorted(got) == sorted(want)
  for name, value in want.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)

  finetune.run(_spec(adapter, 6.4, tmp_path / "d", offline_data_dir), strategy, cache)
  assert cache.model is not model and cache.steps.model is cache.model  # one model kept
