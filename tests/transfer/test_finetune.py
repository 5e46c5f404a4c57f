"""finetune.run: consecutive runs of one expert reuse its loaded layer, with the module's weights."""
import os

import tensorflow as tf

from tfexperts.data import tasks
from tfexperts.transfer import finetune


def _spec(handle, learning_rate, directory, data_dir):
  return finetune.RunSpec(handle=handle, task=tasks.get_task("shapes_fine_tiny"),
                          train_split="train800", eval_split="val200",
                          learning_rate=learning_rate, steps=3, batch_size=8, resolution=32,
                          seed=0, directory=str(directory), data_dir=data_dir)


def test_reused_expert_starts_from_the_module_weights(tmp_path, exported, offline_data_dir,
                                                     capsys):
  strategy = tf.distribute.get_strategy()
  baseline = os.path.join(exported.collection_dir, "baseline", "1")
  adapter = os.path.join(exported.collection_dir, "adapter_animal", "1")
  finetune._LastExpert.key = None  # pylint: disable=protected-access  (a fresh load first)

  first = finetune.run(_spec(baseline, 0.1, tmp_path / "a", offline_data_dir), strategy)
  loaded = finetune._LastExpert.layer  # pylint: disable=protected-access
  # The module's upstream head is trainable but outside the pre-logits path: named, left as is.
  unreached = [line for line in capsys.readouterr().out.splitlines() if "no gradient" in line]
  assert len(unreached) == 1 and "2 trainable variables" in unreached[0], unreached
  assert "head" in unreached[0], unreached
  finetune.run(_spec(baseline, 1.0, tmp_path / "b", offline_data_dir), strategy)
  again = finetune.run(_spec(baseline, 0.1, tmp_path / "c", offline_data_dir), strategy)
  assert finetune._LastExpert.layer is loaded  # pylint: disable=protected-access
  # Trained twice in between: only a reset to the module's weights gives the fresh run's result.
  assert again["correct_bits"] == first["correct_bits"]
  assert again["accuracy"] == first["accuracy"]

  finetune.run(_spec(adapter, 0.1, tmp_path / "d", offline_data_dir), strategy)
  assert finetune._LastExpert.layer is not loaded  # pylint: disable=protected-access
