"""Domain Adaptive Transfer: weights by hand, resampling, the baseline rebuild, a run end to end."""
import json
import os
import signal
import time

import numpy as np
import pytest

from tfexperts.data import offline
from tfexperts.data import upstream as upstream_lib
from tfexperts.errors import UserError
from tfexperts.hub import export
from tfexperts.hub import keras_baseline
from tfexperts.hub import load
from tfexperts.hub import metadata
from tfexperts.transfer import dat_weights
from tfexperts.train import loop
from tests import processes
from tests.hub import collection_fixtures
from tests.transfer import test_vtab_eval


def test_weights_equal_a_hand_computation():
  # Three images over four upstream classes; upstream counts 10, 30, 60, 0.
  probs = np.array([[0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.6, 0.0], [1.0, 1.0, 0.0, 0.0]])
  p_t = dat_weights.task_label_distribution(probs)  # rows normalised first: the last is 0.5/0.5
  np.testing.assert_allclose(p_t, [(0.5 + 0.2 + 0.5) / 3, (0.5 + 0.2 + 0.5) / 3, 0.6 / 3, 0.0])
  weights = dat_weights.class_weights(p_t, [10, 30, 60, 0])
  np.testing.assert_allclose(weights, [0.4 / 0.1, 0.4 / 0.3, 0.2 / 0.6, 0.0])
  summary = dat_weights.summary(weights, [10, 30, 60, 0], ["a", "b", "c", "d"])
  # Image weights: 10 x 4, 30 x 4/3, 60 x 1/3: (sum w)^2 / sum w^2 = 100^2 / (160 + 53.3 + 6.67).
  assert summary["effective_sample_size"] == pytest.approx(100.0 ** 2 / (160 + 160 / 3 + 20 / 3))
  assert summary["acceptance_rate"] == pytest.approx(100.0 / (4.0 * 100))
  shares = {c["class"]: c["share"] for c in summary["top_classes"]}
  assert shares == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.2, "d": 0.0})


def test_weights_reject_mismatched_or_empty_inputs():
  with pytest.raises(ValueError, match="one size"):
    dat_weights.class_weights([0.5, 0.5], [1, 2, 3])
  with pytest.raises(ValueError, match="every DAT weight is 0"):
    dat_weights.class_weights([0.0, 1.0], [5, 0])


@pytest.fixture(scope="module")
def shapes_upstream(offline_data_dir):
  return upstream_lib.Upstream("tfexperts_shapes/tiny", offline.upstream_hierarchy_path(),
                               data_dir=offline_data_dir)


def test_resampled_upstream_follows_the_weights(shapes_upstream):
  counts = shapes_upstream.label_counts()
  assert counts.sum() == shapes_upstream.num_images
  weights = np.zeros(shapes_upstream.num_classes)
  weights[[0, 1]] = [1.0, 0.25]  # class 1 is kept with probability 1/4
  ds = shapes_upstream.weighted_dataset(weights, batch_size=None, seed=3)
  labels = np.array([ex["label"] for ex in ds.take(2000).as_numpy_iterator()])
  assert set(labels) <= {0, 1}
  expected = counts[1] * 0.25 / (counts[0] + counts[1] * 0.25)
  assert np.mean(labels == 1) == pytest.approx(expected, abs=0.04)
  again = shapes_upstream.weighted_dataset(weights, batch_size=None, seed=3)
  np.testing.assert_array_equal(
      labels[:200], [ex["label"] for ex in again.take(200).as_numpy_iterator()])


@pytest.fixture(scope="module")
def baseline_module(tmp_path_factory, shapes_upstream):
  """A tiny baseline whose head predicts the tiny upstream dataset's classes, exported."""
  model = collection_fixtures.tiny_baseline(num_classes=shapes_upstream.num_classes)
  meta = metadata.build("baseline", "baseline", model, module="baseline", with_logits=True,
                        resolution=32, logit_names=list(shapes_upstream.class_names),
                        num_images=shapes_upstream.num_images)
  path = str(tmp_path_factory.mktemp("dat_collection") / "baseline" / "1")
  export.export_expert(model, path, meta, with_logits=True)
  return model, load.load_expert(path)


def test_rebuilt_baseline_equals_the_module(baseline_module):
  model, expert = baseline_module
  rebuilt = keras_baseline.rebuild(expert)
  images = collection_fixtures.images(3)
  reference = model(images)["logits"].numpy()
  scale = 1e-5 * np.abs(reference).max()  # float32 noise of a different graph, relative to scale
  np.testing.assert_allclose(rebuilt(images)["logits"], reference, rtol=0, atol=scale)
  np.testing.assert_allclose(expert.logits(images), reference, rtol=0, atol=scale)


def test_rebuild_refuses_a_module_that_is_not_a_baseline(exported):
  expert = load.load_expert(os.path.join(exported.collection_dir, "adapter_animal", "1"))
  with pytest.raises(UserError, match="not a tfexperts baseline"):
    keras_baseline.rebuild(expert)


@pytest.mark.slow
def test_killed_dat_run_resumes_and_writes_its_record(tmp_path, baseline_module, exported,
                                                       offline_data_dir):
  """bin/vtab_eval --selection=dat, SIGKILLed during the upstream fine-tuning, then rerun."""
  results = str(tmp_path / "results")
  pool = f"{baseline_module[1].handle},{os.path.join(exported.collection_dir, 'adapter_animal', '1')}"
  args = ["--selection=dat", f"--experts={pool}", f"--data_dir={offline_data_dir}",
          f"--results_dir={results}", "--upstream_dataset=tfexperts_shapes/tiny",
          "--dat_steps=20", "--dat_batch_size=8", "--steps=3", "--learning_rates=0.1",
          *test_vtab_eval.QUICK]
  ckpt = os.path.join(results, "runs", "shapes_fine_tiny", "dat", "upstream", "ckpt")
  proc = processes.start_binary("vtab_eval", args)
  deadline = time.time() + 600
  while loop.checkpointed_step(ckpt) < 5 and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  interrupted = loop.checkpointed_step(ckpt)
  assert 5 <= interrupted < 20
  resumed = processes.run_binary("vtab_eval", args)
  assert f"resuming from step {interrupted}" in resumed.stdout
  record = json.load(open(os.path.join(results, "shapes_fine_tiny__dat.json")))
  assert record["chosen"] == ["dat_shapes_fine_tiny"] and 0 <= record["test_accuracy"] <= 1
  low, high = record["test_interval"]
  assert low <= record["test_accuracy"] <= high
  assert record["dat"]["weights"]["effective_sample_size"] > 0
  cost = record["dat"]["cost"]
  assert cost["label_distribution"]["images"] == 800
  assert cost["upstream_training"]["images"] == 20 * 8
  assert cost["transfer"]["images"] == (3 + 3) * 16  # one sweep and one final run at batch 16
  assert record["dat"]["upstream_training_over_knn"] > 0
  assert loop.checkpointed_step(ckpt) == 20
  module = load.load_expert(record["dat"]["handle"]).metadata
  assert module.kind == "full" and module.name == "dat_shapes_fine_tiny"
