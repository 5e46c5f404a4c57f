"""A fine-tuning mode other than full end to end: its record beside full's, and the demo's block."""
import csv
import os
import shutil

import pytest

from tfexperts import demo
from tfexperts.transfer import eval_config
from tfexperts.transfer import evaluate
from tfexperts.transfer import protocol
from tfexperts.transfer import records
from tfexperts.transfer import report

TASK = "shapes_fine_tiny"
TINY = {"steps": (2,), "learning_rates": (0.1,), "batch_size": 16, "final_repeats": 1}


@pytest.mark.slow
def test_a_patch_run_writes_its_record_beside_full(tmp_path, exported, offline_data_dir,
                                                   shapes_select_run):
  results = str(tmp_path / "results")
  # Both runs read the pool's features from the results dir's cache, seeded from the shared one:
  # the point here is the fine-tuning modes, not embedding.
  shutil.copytree(shapes_select_run.cache_dir, os.path.join(results, "features"))
  full, = evaluate.run(eval_config.EvalConfig(
      tasks=[TASK], experts=[exported.collection_dir], selection="knn",
      protocol=protocol.ProtocolConfig.quick(**TINY), data_dir=offline_data_dir,
      results_dir=results))
  patch, = demo.evaluate_modes(TASK, exported.collection_dir, offline_data_dir, results,
                               modes=("patch",), **TINY)
  assert (full.finetune, patch.finetune) == ("full", "patch")
  assert patch.chosen == full.chosen  # kNN picks the same expert whatever the mode
  expert = full.chosen[0]
  assert records.read(report.record_path(results, TASK, "knn")) == full
  assert records.read(report.record_path(results, TASK, "knn", "patch")) == patch
  assert sorted(f for f in os.listdir(results) if f.endswith(".json")) == [
      f"{TASK}__knn.json", f"{TASK}__knn__patch.json"]
  full_run, patch_run = full.per_expert[expert], patch.per_expert[expert]
  assert patch_run["trained_parameters"] < full_run["trained_parameters"]
  assert patch_run["artifact_bytes"] < full_run["artifact_bytes"]
  assert patch_run["images_per_second"] > 0 and patch_run["train_seconds"] > 0
  rows = list(csv.DictReader(open(os.path.join(results, "results.csv"))))
  assert [(r["finetune"], r["trained_parameters"]) for r in rows] == [
      ("full", str(full_run["trained_parameters"])),
      ("patch", str(patch_run["trained_parameters"]))]
  summary = open(os.path.join(results, "summary.md")).read()
  assert "| knn |" in summary and "| knn (patch) |" in summary
  assert f"- {TASK}: patch ({expert}) vs full ({expert}): " in summary
  lines = demo.modes_lines(results, TASK)
  assert lines[0].startswith(f"- {TASK}: kNN's pick {expert}, fine-tuned whole (full) and in "
                             "patch")
  table = lines[-1].splitlines()
  assert [row.split(" | ")[2] for row in table[2:]] == ["full", "patch"]
  assert f"{patch_run['trained_parameters']:,}" in table[3]
