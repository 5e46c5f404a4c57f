"""finetune.run: consecutive runs of one expert reuse its model and traced step, from the module's
weights, with the results of a fresh run."""
import os

import numpy as np
import tensorflow as tf

from tfexperts.data import tasks
from tfexperts.train import loop
from tfexperts.transfer import finetune


def _spec(handle, learning_rate, directory, data_dir):
  return finetune.RunSpec(handle=handle, task=tasks.get_task("shapes_fine_tiny"),
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
  finetune._LastModel.key = None  # pylint: disable=protected-access  (a fresh load first)

  first = finetune.run(_spec(baseline, 0.1, tmp_path / "a", offline_data_dir), strategy)
  model = finetune._LastModel.model  # pylint: disable=protected-access
  traced = loop._LastRun.parts[3]  # pylint: disable=protected-access
  # The module's upstream head is trainable but outside the pre-logits path: named, left as is.
  unreached = [line for line in capsys.readouterr().out.splitlines() if "no gradient" in line]
  assert len(unreached) == 1 and "2 trainable variables" in unreached[0], unreached
  assert "head" in unreached[0], unreached
  finetune.run(_spec(baseline, 1.0, tmp_path / "b", offline_data_dir), strategy)
  again = finetune.run(_spec(baseline, 0.1, tmp_path / "c", offline_data_dir), strategy)
  assert finetune._LastModel.model is model  # pylint: disable=protected-access
  assert traced.experimental_get_tracing_count() == 1  # three runs, one trace
  # Trained twice in between: only a reset of the model, the optimizer, the step and the
  # schedule gives the fresh run's result, to the bit.
  assert again["correct_bits"] == first["correct_bits"]
  assert again["accuracy"] == first["accuracy"]
  want, got = _trained_weights(tmp_path / "a"), _trained_weights(tmp_path / "c")
  assert sorted(got) == sorted(want)
  for name, value in want.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)

  finetune.run(_spec(adapter, 0.1, tmp_path / "d", offline_data_dir), strategy)
  assert finetune._LastModel.model is not model  # pylint: disable=protected-access
