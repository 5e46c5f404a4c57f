"""Divergence (issue 28 item 2): a non-finite loss or weights stop a run naming it, the step and
the learning rate; nothing non-finite is checkpointed, saved as final or exported; vtab_eval
records a diverged fine-tune as `diverged`, with no accuracy in results.csv or the table."""
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import processes
from tests.hub import collection_fixtures
from tests.train import strategy_worker
from tests.transfer import result_records
from tfexperts import artifacts
from tfexperts import errors
from tfexperts.hub import export
from tfexperts.hub import metadata as metadata_lib
from tfexperts.models import bit
from tfexperts.models import finished
from tfexperts.train import loop
from tfexperts.transfer import finetune
from tfexperts.transfer import protocol
from tfexperts.transfer import report
from tfexperts.transfer import topk

STRATEGY = tf.distribute.OneDeviceStrategy("/cpu:0")


def _task_with_nan_logits_from(batch):
  """The synthetic tiny-BiT task whose logits turn NaN from global batch `batch` (0-based) on (a
  marker added to each batch), so the loss of step `batch + 1` is the first non-finite one."""
  task = strategy_worker.make_task()
  make_batches, forward = task.make_dataset, task.forward

  def make_dataset(ctx, per_replica_batch, start_step):
    def mark(index, example):
      size = tf.shape(example["label"])[0]
      nan = tf.where(index >= batch, np.float32(np.nan), np.float32(0.0))
      return dict(example, poison=tf.fill([size, 1], nan))
    return make_batches(ctx, per_replica_batch, start_step).enumerate(start_step).map(mark)

  task.make_dataset = make_dataset
  task.forward = lambda model, example: forward(model, example) + example["poison"]
  return task


def _checkpoints(directory):
  return tf.train.get_checkpoint_state(directory).all_model_checkpoint_paths


def _finite(checkpoint):
  reader = tf.train.load_checkpoint(checkpoint)
  return all(np.isfinite(reader.get_tensor(k)).all() for k in reader.get_variable_to_shape_map()
             if k.startswith("model_variables/"))


def test_nan_loss_at_a_chosen_step_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
  directory = str(tmp_path / "ckpt")
  config = loop.LoopConfig(total_steps=12, global_batch_size=8, base_lr=0.3, checkpoint_every=4,
                           log_every=10)
  with pytest.raises(errors.DivergedError) as raised:
    loop.train(STRATEGY, _task_with_nan_logits_from(6), config, directory)
  error = raised.value
  assert error.step == 7 and error.run == "synthetic"  # the first NaN step, not the log step 10
  assert error.learning_rate == pytest.approx(0.3 * 8 / 512 * 0.1)  # step decay after 30%
  assert "[synthetic] diverged: the loss is not finite at step 7 (learning rate 0.000469)" in (
      str(error))
  assert error.checkpoint.endswith("ckpt-4") and "step 4" in str(error)
  assert [os.path.basename(p) for p in _checkpoints(directory)] == ["ckpt-4"]
  assert _finite(error.checkpoint)


def test_huge_learning_rate_never_checkpoints_nonfinite_weights(tmp_path):
  directory = str(tmp_path / "ckpt")
  config = loop.LoopConfig(total_steps=20, global_batch_size=8, base_lr=1e9, checkpoint_every=1,
                           log_every=5)
  with pytest.raises(errors.DivergedError, match=r"\[synthetic\] diverged: .* at step \d+ "
                     r"\(learning rate [0-9.e+]+\)"):
    loop.train(STRATEGY, strategy_worker.make_task(), config, directory)
  # The weights overflow one step before the loss does: only the weight check stops that save.
  paths = _checkpoints(directory)
  assert paths and all(_finite(p) for p in paths)


def _nan_model():
  model = bit.create_model("tiny", num_classes=3)
  kernel = model.weights[0]
  kernel.assign(np.full(kernel.shape, np.nan, "float32"))
  return model


def test_export_and_finished_model_refuse_nonfinite_weights(tmp_path):
  model = _nan_model()
  path = str(tmp_path / "export" / "expert" / "1")
  with pytest.raises(errors.NonFiniteModelError, match="Model 'bad_expert' has non-finite"):
    export.export_expert(model, path, metadata_lib.build("full", "bad_expert", model,
                                                         resolution=32))
  assert not tf.io.gfile.exists(path)
  record = artifacts.ModelRecord.from_json({**collection_fixtures.COMMON, "kind": "baseline",
                                            "name": "baseline"})
  final = str(tmp_path / "final")
  with pytest.raises(errors.NonFiniteModelError, match="'baseline'.*Not saved"):
    finished.save_final(model, final, record)
  assert not tf.io.gfile.exists(final)


def _fake_runs(monkeypatch, diverging):
  """Replaces fine-tuning by a table: a run diverges when `diverging(phase, lr)`, else its accuracy
  is its learning rate (so the largest finite one wins the sweep)."""
  def run(spec, strategy, cache):
    del strategy, cache
    phase = os.path.basename(spec.directory).split("_")[0]
    result = {"seed": spec.seed, "seconds": 1.0, "learning_rate": spec.learning_rate}
    if diverging(phase, spec.learning_rate):
      return {**result, "diverged": True, "accuracy": None, "diverged_at_step": 3,
              "message": "diverged"}
    return {**result, "diverged": False, "accuracy": spec.learning_rate, "num_eval_examples": 10,
            "correct_bits": None}
  monkeypatch.setattr(finetune, "run", run)
  monkeypatch.setattr(protocol, "module_resolution", lambda config, handle: 32)


class _Task:
  name = "t"


def test_a_diverged_sweep_point_cannot_win_and_divergence_everywhere_leaves_no_accuracy(
    monkeypatch, tmp_path):
  config = protocol.ProtocolConfig(learning_rates=(0.5, 0.2, 0.1), steps=(5,), batch_size=512,
                                   final_repeats=1)
  _fake_runs(monkeypatch, lambda phase, lr: lr == 0.5)
  result = protocol.run_protocol("h", _Task(), config, str(tmp_path), None)
  assert result["best"]["learning_rate"] == 0.2 and result["test_accuracy"] == 0.2
  assert [r.get("diverged", False) for r in result["sweep"]] == [True, False, False]
  assert result["sweep"][0]["val_accuracy"] is None and not result["diverged"]

  _fake_runs(monkeypatch, lambda phase, lr: True)
  result = protocol.run_protocol("h", _Task(), config, str(tmp_path), None)
  assert result["diverged"] and result["diverged_in"] == "sweep"
  assert result["test_accuracy"] is None and result["best"] is None and result["final"] == []

  _fake_runs(monkeypatch, lambda phase, lr: phase == "final")
  result = protocol.run_protocol("h", _Task(), config, str(tmp_path), None)
  assert result["diverged"] and result["diverged_in"] == "final"
  assert result["test_accuracy"] is None and "test_interval" not in result

  _fake_runs(monkeypatch, lambda phase, lr: lr == 0.5)
  picked = topk.select({"a": "ha", "b": "hb"}, {"a": 0.9, "b": 0.8}, _Task(),
                       protocol.ProtocolConfig(learning_rates=(0.5,), steps=(8,)), str(tmp_path),
                       None, k=2)
  assert picked["pick"] == "a" and all(c["diverged"] for c in picked["candidates"])


def test_diverged_record_has_no_accuracy_in_results_csv_or_the_table(tmp_path):
  (tmp_path / "results.csv").write_text("task,group,selection,chosen,test_accuracy\n"
                                        "old,natural,knn,x,0.5\n")  # before the diverged column
  report.write_record(str(tmp_path), result_records.make("t", accuracy=None, diverged=True))
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert [(r["task"], r["test_accuracy"], r["diverged"]) for r in rows] == [
      ("old", "0.5", ""), ("t", "", "yes")]
  table = report.summarize(str(tmp_path))
  assert "| knn | diverged | - | - |" in table


@pytest.mark.slow
def test_vtab_eval_with_a_huge_learning_rate_records_diverged(tmp_path, exported,
                                                              offline_data_dir,
                                                              shapes_select_run):
  results = str(tmp_path / "results")
  # kNN scores the pool from the shared feature cache: the point here is the fine-tuning.
  proc = processes.run_binary("vtab_eval", [
      "--task=shapes_fine_tiny", f"--experts={exported.collection_dir}",
      f"--data_dir={offline_data_dir}", f"--results_dir={results}",
      f"--cache_dir={shapes_select_run.cache_dir}", "--selection=knn",
      "--report_proxies=knn", "--quick", "--learning_rates=1e9", "--steps=4", "--final_repeats=1",
      "--batch_size=16"])
  record = json.load(open(os.path.join(results, "shapes_fine_tiny__knn.json")))
  expert = record["chosen"][0]
  assert record["diverged"] and record["test_accuracy"] is None
  assert record["per_expert"][expert]["diverged_in"] == "sweep"
  assert "diverged" in record["diverged_experts"][expert]
  row = next(csv.DictReader(open(os.path.join(results, "results.csv"))))
  assert (row["test_accuracy"], row["diverged"]) == ("", "yes")
  assert "| knn | diverged |" in open(os.path.join(results, "summary.md")).read()
  assert "test accuracy" not in proc.stdout.split("selection=knn")[-1].split("\n")[1]
