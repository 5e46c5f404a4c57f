"""Multi-task patches (issue 29 item 3): one small run of two tiny tasks through the protocol
(per-task artifacts that `transfer.apply` loads and that predict what the multi-task model
predicts, each task beside its single-task patch run, the result file and table, and through
`evaluate.run` the records: a patch and a patch_multitask one per task, paired in the summary),
then on its model the per-example routing by task id and the trained parameter count; and the
argument errors. One test holds the run, so pytest-xdist never runs it twice."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.hub import collection_fixtures
from tfexperts import errors
from tfexperts import fileio
from tfexperts import transfer
from tfexperts.data import tasks
from tfexperts.hub import load as hub_load
from tfexperts.models import bit
from tfexperts.select import selection
from tfexperts.transfer import artifact
from tfexperts.transfer import eval_config
from tfexperts.transfer import evaluate
from tfexperts.transfer import finetune
from tfexperts.transfer import modes
from tfexperts.transfer import multitask
from tfexperts.transfer import multitask_args
from tfexperts.transfer import multitask_model
from tfexperts.transfer import protocol
from tfexperts.transfer import records

TINY = bit.PRESETS["tiny"]
TASKS = ("shapes_fine_tiny", "shapes_count_tiny")  # 5 and 6 classes
# Predictions of one model through two graphs agree to float32 rounding of the logits' scale.
RTOL = ATOL = 1e-5


@pytest.fixture(scope="module")
def baseline(exported):
  return os.path.join(exported.collection_dir, "baseline", "1")


def _closed_forms(num_classes):
  return [modes.closed_form("patch", TINY["units"], TINY["width"], c) for c in num_classes]


def _small_run(baseline, offline_data_dir, root):
  """The one small run of this file: the multi-task protocol on two tiny tasks (one sweep point,
  one retrain) through a cache of ours (so its final model stays for the checks), the trained
  model's per-task predictions, then `evaluate` (reading those runs, running the single-task
  ones)."""
  config = protocol.ProtocolConfig(learning_rates=(1.0,), steps=(4,), batch_size=8,
                                   resolution=32, sweep_repeats=1, final_repeats=1,
                                   decay="cosine", finetune="patch")
  task_list = [tasks.get_task(name) for name in TASKS]
  strategy = tf.distribute.get_strategy()
  work = str(root / "runs")
  cache = finetune.ModelCache()
  expert = hub_load.reference(baseline)  # what the binaries' edge hands down
  multi = multitask.run_protocol(task_list, expert, config,
                                 os.path.join(work, f"multitask_{multitask_args.label(TASKS)}",
                                              "baseline"), strategy, offline_data_dir, cache)
  model = cache.model  # the final retrain's
  images = collection_fixtures.images(6, seed=5)
  predictions = [model.task_logits(images, i).numpy() for i in range(len(TASKS))]
  result = multitask.evaluate(list(TASKS), expert, config, work, strategy, offline_data_dir)
  return {"multi": multi, "result": result, "images": images, "predictions": predictions,
          "root": root, "model": model, "config": config, "work": work}


@pytest.mark.slow
def test_multitask_run_artifacts_apply_and_single_task_comparison(baseline, offline_data_dir,
                                                                  tmp_path):
  small_run = _small_run(baseline, offline_data_dir, tmp_path)
  multi, result = small_run["multi"], small_run["result"]
  assert not multi["diverged"] and multi["best"]["learning_rate"] == 1.0
  assert result["tasks"] == list(TASKS) and result["expert"]["name"] == "baseline"
  assert result["final"] == multi["final"]  # evaluate read the runs, did not train again
  closed = _closed_forms([5, 6])
  assert multi["final"][0]["trained_parameters"] == sum(closed)
  assert result["trained_parameters"] == {"multitask": sum(closed), "single_task": sum(closed)}
  for index, row in enumerate(result["per_task"]):
    mine, single = row["multitask"], row["single_task"]
    assert mine["trained_parameters"] == closed[index]
    assert 0.0 <= mine["test_accuracy"] <= 1.0 and single["test_accuracy"] is not None
    low, high = single["test_interval"]
    assert row["within_single_interval"] == (low <= mine["test_accuracy"] <= high)
    assert row["paired"]["n"] == mine["test_size"] == single["test_size"]
    # One artifact per task, in the single-task format: `transfer.apply` predicts what the
    # multi-task model predicts for that task.
    applied = transfer.apply(baseline, mine["artifact"])
    np.testing.assert_allclose(applied.predict(small_run["images"], verbose=0),
                               small_run["predictions"][index], rtol=RTOL, atol=ATOL)
    assert np.abs(small_run["predictions"][index]).max() > 0.01  # the head trained
    record, values = artifact.read(mine["artifact"])
    assert (record["task"], record["finetune"], record["num_classes"]) == (
        TASKS[index], "patch", row["num_classes"])
    assert mine["artifact_bytes"] == fileio.tree_nbytes(mine["artifact"])
    # Each task's stream, batch and step size are its single-task run's and the expert is
    # frozen, so the multi-task patch and head equal the single-task ones up to float rounding.
    _, single_values = artifact.read(single["artifact"])
    for got, want in zip(values, single_values):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  path = multitask.write_result(str(small_run["root"] / "results"), result)
  assert os.path.basename(path) == "multitask_shapes_fine_tiny+shapes_count_tiny_patch.json"
  assert fileio.read_json(path)["per_task"][1]["task"] == TASKS[1]
  text = multitask.table(result)
  print(text)
  assert all(name in text for name in TASKS) and "single-task" in text
  _check_records(small_run, baseline, offline_data_dir)
  _check_routing_and_parameter_count(small_run["model"])  # last: it changes the model


def _check_records(small_run, baseline, offline_data_dir):
  """`evaluate.run` with `multitask` reads the runs (nothing trains again) and writes per task a
  patch and a patch_multitask record, paired in the summary's modes table."""
  results_dir = str(small_run["root"] / "records")
  config = eval_config.EvalConfig(
      tasks=list(TASKS), experts=[baseline], selection="baseline",
      protocol=small_run["config"], data_dir=offline_data_dir, results_dir=results_dir,
      workdir=small_run["work"], multitask=True)
  written = evaluate.run(config, tf.distribute.get_strategy())
  assert [(r.task, r.finetune, r.selection) for r in written] == [
      (task, mode, "baseline") for task in TASKS for mode in ("patch", records.MULTITASK)]
  for index, row in enumerate(small_run["result"]["per_task"]):
    single, multi = written[2 * index], written[2 * index + 1]
    assert single.test_accuracy == row["single_task"]["test_accuracy"]
    assert multi.test_accuracy == row["multitask"]["test_accuracy"]
    assert multi.multitask.tasks == list(TASKS) and multi.multitask.handle == baseline
    assert multi.multitask.within_single_interval == row["within_single_interval"]
    assert multi.per_expert["baseline"]["trained_parameters"] == _closed_forms([5, 6])[index]
  summary = open(os.path.join(results_dir, "summary.md")).read()
  for task in TASKS:
    assert f"| {task} | baseline | patch_multitask | " in summary
    assert f"- {task}: patch_multitask (baseline) vs patch (baseline): " in summary


def _check_routing_and_parameter_count(model):
  """Routing is per example: changing task 1's patch and head leaves task 0's logits bitwise
  equal. Trained parameters: tasks x (patch + head). Changes `model`'s trained variables."""
  trained = modes.trained_variables(model)
  assert modes.count(trained) == sum(_closed_forms([5, 6]))
  rng = np.random.default_rng(0)
  for v in trained:  # non-zero heads and patches that differ per task
    center = 1.0 if v.path.endswith("gamma") else 0.0
    v.assign(rng.normal(center, 0.2, v.shape).astype("float32"))
  images = collection_fixtures.images(6, seed=3)
  ids = np.array([0, 1, 1, 0, 0, 1], np.int32)
  before = model(images, ids).numpy()
  assert (before[ids == 0, 5:] == multitask_model.NEGATIVE).all()  # the 5-class task's padding
  # Task 1's patch rows and head change: task 0's logits are bitwise unaffected, task 1's not.
  bank_rows = model.bank.trainable_variables
  assert bank_rows and all(v.shape[0] == 2 for v in bank_rows)
  for v in bank_rows:
    value = v.numpy()
    value[1] += 0.3
    v.assign(value)
  for v in model.heads[1].weights:
    v.assign(v.numpy() + 0.3)
  after = model(images, ids).numpy()
  np.testing.assert_array_equal(after[ids == 0], before[ids == 0])
  assert np.abs(after[ids == 1] - before[ids == 1]).min() > 1e-4
  # A task's rows in a mixed batch are what the task computes alone.
  np.testing.assert_allclose(model.task_logits(images[ids == 1], 1).numpy(), after[ids == 1],
                             rtol=RTOL, atol=ATOL)


def test_argument_errors_name_the_value(baseline, exported):
  config = protocol.ProtocolConfig(finetune="full")
  with pytest.raises(errors.UserError, match="finetune='full'"):
    multitask.evaluate(list(TASKS), hub_load.reference(baseline), config, "unused", None)
  with pytest.raises(errors.UserError, match=r"tasks=\['shapes_fine_tiny'\]$"):
    multitask_args.check(["shapes_fine_tiny"], "patch")
  with pytest.raises(errors.UserError, match="shapes_fine_tiny repeated"):
    multitask_args.check(["shapes_fine_tiny", "shapes_fine_tiny"], "patch")
  with pytest.raises(errors.UserError, match="mixup_alpha=0.2"):
    multitask_args.check(list(TASKS), "patch", mixup_alpha=0.2)
  with pytest.raises(errors.UserError, match="selection='knn'"):
    multitask.choose_expert(selection.load_candidates([exported.collection_dir]), "knn")
  # EvalConfig checks once, on construction, before anything loads.
  with pytest.raises(errors.UserError, match="'baseline'.*selection='knn'"):
    eval_config.EvalConfig(tasks=list(TASKS), experts=[exported.collection_dir],
                           protocol=protocol.ProtocolConfig(finetune="patch"), multitask=True)
  with pytest.raises(errors.UserError, match="multitask=.yes."):
    eval_config.EvalConfig(tasks=list(TASKS), experts=[baseline], multitask="yes")
