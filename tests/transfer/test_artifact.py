"""Per-task artifacts (issue 29 item 2): a patch run stores only what it trained; applied to its
expert in a fresh process it predicts what the trained model predicted; exported with its expert
it is a hub module that fine-tunes in `hub.KerasLayer` and serves the same predictions; applied to
another module it is one error naming both."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import processes
from tests.hub import collection_fixtures
from tfexperts import errors
from tfexperts import fileio
from tfexperts import transfer
from tfexperts.data import tasks
from tfexperts.hub import native
from tfexperts.hub import load as hub_load
from tfexperts.hub.tfhub import hub
from tfexperts.models import bit
from tfexperts.transfer import artifact
from tfexperts.transfer import finetune
from tfexperts.transfer import modes

TINY = bit.PRESETS["tiny"]
# Predictions of one model through two graphs agree to float32 rounding of the logits' scale.
RTOL = ATOL = 1e-5

APPLY = """
import sys
import numpy as np
from tfexperts import transfer
expert, artifact_dir, images_path, out = sys.argv[1:]
model = transfer.apply(expert, artifact_dir)
np.save(out, model.predict(np.load(images_path), verbose=0))
"""


def test_patch_artifact_round_trip(tmp_path, exported, offline_data_dir):
  baseline = os.path.join(exported.collection_dir, "baseline", "1")
  task = tasks.get_task("shapes_fine_tiny")
  spec = finetune.RunSpec(expert=hub_load.reference(baseline), task=task, train_split="train800",
                          eval_split="val200", learning_rate=64.0, steps=4, batch_size=8,
                          resolution=32, seed=0, directory=str(tmp_path / "run"),
                          data_dir=offline_data_dir, finetune="patch")
  cache = finetune.ModelCache()
  result = finetune.run(spec, tf.distribute.get_strategy(), cache)
  model = cache.model
  closed = modes.closed_form("patch", TINY["units"], TINY["width"], task.num_classes)
  assert result["finetune"] == "patch" and result["trained_parameters"] == closed
  assert result["artifact"] == str(tmp_path / "run" / "artifact")
  assert result["artifact_bytes"] == fileio.tree_nbytes(result["artifact"]) > 4 * closed
  assert result["images_per_second"] > 0
  assert sorted(os.listdir(tmp_path / "run")) == ["artifact", "result.json"]  # no checkpoint
  record, values = artifact.read(result["artifact"])
  assert (record["finetune"], record["task"], record["num_classes"]) == (
      "patch", "shapes_fine_tiny", 5)
  assert record["expert"]["path"] == baseline and sum(v.size for v in values) == closed
  print(f"\ntiny patch artifact: {result['trained_parameters']} parameters, "
        f"{result['artifact_bytes']} bytes")
  # The frozen convolutions are still the module's.
  module = native.trainable_model(hub_load.reference(baseline), "float32")
  kernel = lambda m: next(v for v in m.variables if v.path.endswith(  # noqa: E731
      "unit01/b/standardized_conv2d/kernel")).numpy()
  np.testing.assert_array_equal(kernel(model.expert), kernel(module))

  images = collection_fixtures.images(6, seed=5)
  want = model.predict(images, verbose=0)
  assert np.abs(want).max() > 0.01  # the head trained
  images_path, got_path = str(tmp_path / "images.npy"), str(tmp_path / "got.npy")
  np.save(images_path, images)
  processes.run_python(APPLY, [baseline, result["artifact"], images_path, got_path])
  np.testing.assert_allclose(np.load(got_path), want, rtol=RTOL, atol=ATOL)

  # A wrong pairing from the binary: one error line naming both modules.
  other = os.path.join(exported.collection_dir, "patch_animal", "1")
  proc = processes.run_binary("export_experts", [
      f"--artifact={result['artifact']}", f"--expert={other}",
      f"--output={tmp_path / 'wrong'}"], check_exit=False)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert lines[0].startswith("export_experts: error: Artifact ") and baseline in lines[0]
  assert other in lines[0] and "identity" in lines[0]
  assert not os.path.exists(tmp_path / "wrong")  # nothing written

  # Expert + artifact as one hub module: predicts, and fine-tunes in hub.KerasLayer.
  output = str(tmp_path / "task_module")
  transfer.export(baseline, result["artifact"], output)
  metadata = json.load(open(os.path.join(output, "assets", "metadata.json")))
  assert metadata["kind"] == "task" and metadata["outputs"]["logits"] == 5
  assert metadata["task"]["finetune"] == "patch"
  layer = hub.KerasLayer(output, trainable=True)
  classifier = tf_keras.Sequential([tf_keras.Input((32, 32, 3)), layer])
  np.testing.assert_allclose(classifier.predict(images, verbose=0), want, rtol=RTOL, atol=ATOL)
  assert len(layer.trainable_weights) == len(layer.weights)
  before = [w.numpy() for w in layer.weights]
  classifier.compile(tf_keras.optimizers.SGD(0.1),
                     tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  classifier.fit(images, np.arange(6) % 5, batch_size=6, epochs=1, verbose=0)
  assert sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.weights)) > len(
      before) // 2


def test_a_directory_without_a_record_is_not_an_artifact(tmp_path):
  with pytest.raises(errors.UserError, match="not a tfexperts fine-tuning artifact"):
    artifact.read(str(tmp_path))
