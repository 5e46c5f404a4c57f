"""The paper-style summary: strategies x tasks with group means, from hand-made records."""
import csv
import dataclasses
import multiprocessing
import os

import pytest

from tfexperts.errors import UserError
from tfexperts.transfer import records
from tfexperts.transfer import report
from tests.transfer import result_records


def _record(task, group, selection, accuracy, strategy_accuracy=None):
  return result_records.make(task, group, selection, accuracy,
                             strategy_accuracy=strategy_accuracy,
                             proxy_scores={"knn": {"x": accuracy / 2, "y": 0.1}})


RECORDS = [
    _record("a", "natural", "all_experts", 0.9,
            {"knn": 0.8, "random": 0.5, "baseline": 0.6, "oracle": 0.9}),
    _record("b", "structured", "all_proxies", 0.7,
            {"knn": 0.7, "random": 0.4, "baseline": 0.5, "domain": None}),
    _record("c", "natural", "knn", 0.3),
]


def test_markdown_table_has_group_and_overall_means():
  assert report.markdown_table(RECORDS) == (
      "| strategy | a | c | b | mean natural | mean structured | mean |\n"
      "|---|---|---|---|---|---|---|\n"
      "| baseline | 60.0 | - | 50.0 | 60.0 | 50.0 | 55.0 |\n"
      "| random | 50.0 | - | 40.0 | 50.0 | 40.0 | 45.0 |\n"
      "| knn | 80.0 | 30.0 | 70.0 | 55.0 | 70.0 | 60.0 |\n"
      "| oracle | 90.0 | - | - | 90.0 | - | 90.0 |\n")


def test_records_round_trip_and_csv_appends(tmp_path):
  for record in RECORDS:
    report.write_record(str(tmp_path), record)
  assert report.read_records(str(tmp_path)) == sorted(RECORDS,
                                                     key=lambda r: (r.task, r.selection))
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert [r["task"] for r in rows] == ["a", "b", "c"]
  assert rows[0]["baseline_accuracy"] == "0.6" and rows[2]["chosen"] == "x"
  markdown = report.summarize(str(tmp_path))
  assert (tmp_path / "summary.md").read_text() == markdown
  assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
  assert (tmp_path / "knn_heatmap.png").read_bytes()[:4] == b"\x89PNG"
  assert report.knn_accuracy_by_task(RECORDS)["a"] == {"x": 0.45, "y": 0.1}


def test_kendall_tau_over_common_experts():
  assert report.kendall_tau({"x": 1, "y": 2, "z": 3}, {"x": 0.1, "y": 0.2, "z": 0.3}) == 1.0
  assert report.kendall_tau({"x": 1, "y": 2}, {"x": 0.2, "y": 0.1, "q": 0.9}) == -1.0
  assert report.kendall_tau({"x": 1}, {"x": 0.3}) is None


def _per_expert(correct):
  from tfexperts.transfer import stats  # pylint: disable=g-import-not-at-top
  return {"test_accuracy": sum(correct) / len(correct), "test_size": len(correct),
          "test_interval": list(stats.wilson_interval(sum(correct), len(correct))),
          "test_correct": {"seed": 0, "bits": stats.pack_correct(correct)}}


def test_intervals_and_paired_verdicts_in_the_table(tmp_path):
  # knn's expert is right on 30 examples where the baseline is wrong, and wrong on 5 where the
  # baseline is right: exact McNemar p = 2 * P(X <= 5 | 35, 1/2) < 0.05, so "better".
  knn = [True] * 60 + [True] * 30 + [False] * 5 + [False] * 5
  base = [True] * 60 + [False] * 30 + [True] * 5 + [False] * 5
  per_expert = {"x": _per_expert(knn), "base": _per_expert(base)}
  picks = {"knn": "x", "random": "base", "baseline": "base"}
  comparisons = report.paired_comparisons(per_expert, picks)
  assert [(c["strategy"], c["against"]) for c in comparisons] == [
      ("knn", "baseline"), ("knn", "random"), ("random", "baseline")]
  first = comparisons[0]
  assert first["verdict"] == "better" and first["difference"] == 0.25
  assert (first["only_a"], first["only_b"], first["n"]) == (30, 5, 100)
  assert comparisons[2]["same_expert"] and comparisons[2]["verdict"] == (
      "no significant difference")
  record = _record("t", "offline", "all_proxies", 0.9, {"knn": 0.9, "random": 0.65,
                                                         "baseline": 0.65})
  record.strategy_interval = {s: per_expert[e]["test_interval"] for s, e in picks.items()}
  record.comparisons = comparisons
  record.test_interval, record.test_size = per_expert["x"]["test_interval"], 100
  table = report.markdown_table([record])
  # Wilson 90/100: [0.8256, 0.9448] -> +-6.0; 65/100: [0.5525, 0.7364] -> +-9.2.
  assert "| knn | 90.0 ±6.0 | 90.0 ±6.0 | 90.0 ±6.0 |" in table
  assert "| baseline | 65.0 ±9.2 |" in table
  report.write_record(str(tmp_path), record)
  summary = report.summarize(str(tmp_path))
  assert ("- t: knn (x) vs baseline (base): better, +25.0 points, 95% CI [+14.") in summary
  assert "exact McNemar p=" in summary and "(30 vs 5 discordant of 100)" in summary
  assert "- t: random vs baseline: no significant difference (both picked base)" in summary
  row = next(csv.DictReader(open(tmp_path / "results.csv")))
  assert float(row["test_low"]) == per_expert["x"]["test_interval"][0]
  assert row["test_size"] == "100"


def test_old_results_csv_is_rewritten_with_the_new_header(tmp_path):
  (tmp_path / "results.csv").write_text("task,group,selection,chosen,test_accuracy\n"
                                        "old,natural,knn,x,0.5\n")
  report.write_record(str(tmp_path), RECORDS[2])
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert [r["task"] for r in rows] == ["old", "c"]
  assert rows[0]["test_accuracy"] == "0.5" and rows[0]["test_low"] == ""


def test_summary_over_a_corrupt_or_incomplete_record_names_the_file(tmp_path):
  report.write_record(str(tmp_path), RECORDS[0])
  cut = tmp_path / "b__knn.json"
  cut.write_text('{"task": "b", "group": "natu')  # a copy cut short
  with pytest.raises(UserError, match="b__knn.json.*not valid JSON"):
    report.summarize(str(tmp_path))
  cut.write_text('{"task": "b", "selection": "knn"}')
  with pytest.raises(UserError, match=r"b__knn.json: missing key 'task_spec'"):
    report.summarize(str(tmp_path))


def _write_records(results_dir, task, count, start):
  start.wait()  # all writers begin together
  for i in range(count):
    report.write_record(results_dir, result_records.make(task, "offline", f"expert_{i}", 0.5,
                                                         chosen=[f"expert_{i}"]))


def test_processes_writing_records_at_once_lose_no_row(tmp_path):
  context = multiprocessing.get_context("spawn")
  start = context.Barrier(3)
  writers = [context.Process(target=_write_records, args=(str(tmp_path), task, 25, start))
             for task in ("task_a", "task_b", "task_c")]
  for writer in writers:
    writer.start()
  for writer in writers:
    writer.join()
  assert [writer.exitcode for writer in writers] == [0, 0, 0]
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert sorted((r["task"], r["selection"]) for r in rows) == sorted(
      (task, f"expert_{i}") for task in ("task_a", "task_b", "task_c") for i in range(25))


def _mode_result(correct, finetune, parameters, nbytes):
  return {**_per_expert(correct), "finetune": finetune, "trained_parameters": parameters,
          "artifact_bytes": nbytes, "images_per_second": 250.0, "train_seconds": 3.0,
          "seconds": 4.0}


def test_each_mode_has_its_record_row_and_verdict_against_full(tmp_path):
  # The patch run is wrong on 30 examples the full run gets right and right on 5 it gets wrong:
  # exact McNemar p < 0.05, so patch is "worse" than full, by 25 points.
  full = [True] * 60 + [True] * 30 + [False] * 5 + [False] * 5
  patch = [True] * 60 + [False] * 30 + [True] * 5 + [False] * 5
  by_mode = {"full": _mode_result(full, "full", 1000, 4000),
             "patch": _mode_result(patch, "patch", 40, 2600)}
  for finetune, result in by_mode.items():
    record = result_records.make("t", "offline", "knn", result["test_accuracy"],
                                 finetune=finetune, per_expert={"x": result},
                                 test_interval=result["test_interval"], test_size=100)
    path = report.write_record(str(tmp_path), record)
    assert os.path.basename(path) == {"full": "t__knn.json", "patch": "t__knn__patch.json"}[
        finetune]
    assert records.read(path) == record
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert [(r["finetune"], r["trained_parameters"], r["artifact_bytes"], r["images_per_second"])
          for r in rows] == [("full", "1000", "4000", "250.0"), ("patch", "40", "2600", "250.0")]
  summary = report.summarize(str(tmp_path))
  assert "| knn | 90.0 ±6.0 |" in summary and "| knn (patch) | 65.0 ±9.2 |" in summary
  assert summary.index("| knn |") < summary.index("| knn (patch) |")
  assert "| t | x | full | 90.0 ±6.0 | (reference) | 1,000 | 4.0 kB | 250 | 4 |" in summary
  assert "| t | x | patch | 65.0 ±9.2 | worse, -25.0 [-35." in summary
  assert "| 40 | 2.6 kB | 250 | 4 |" in summary
  assert "- t: patch (x) vs full (x): worse, -25.0 points" in summary
  # Without the full run there is nothing to pair with: the mode's row has no verdict.
  os.remove(tmp_path / "t__knn.json")
  assert "| t | x | patch | 65.0 ±9.2 | - | 40 |" in report.summarize(str(tmp_path))


def _multitask_part(within, outside_by):
  return records.MultitaskResult(tasks=["t", "u"], handle="/x", mixing="mixed", best=None,
                                 within_single_interval=within, outside_by=outside_by)


def test_multitask_rows_are_a_mode_paired_against_the_single_task_patch_run(tmp_path):
  # The multi-task patch is wrong on 2 examples the single-task patch gets right and right on 1
  # it gets wrong: 64 vs 65 of 100, exact McNemar p = 2 * P(X <= 1 | 3, 1/2) = 1, no verdict.
  full = [True] * 60 + [True] * 30 + [False] * 5 + [False] * 5
  patch = [True] * 60 + [False] * 30 + [True] * 5 + [False] * 5
  multi = list(patch)
  multi[0] = multi[1] = False
  multi[60] = True
  by_mode = {"full": _mode_result(full, "full", 1000, 4000),
             "patch": _mode_result(patch, "patch", 40, 2600),
             records.MULTITASK: {**_mode_result(multi, records.MULTITASK, 40, 2600),
                                 "images_per_second": 500.0, "seconds": 2.0}}
  for finetune, result in by_mode.items():
    record = result_records.make(
        "t", "offline", "x", result["test_accuracy"], finetune=finetune,
        per_expert={"x": result}, test_interval=result["test_interval"], test_size=100,
        times={"selection_seconds": 0.0, "finetune_seconds": result["seconds"]},
        multitask=_multitask_part(True, 0.0) if finetune == records.MULTITASK else None)
    path = report.write_record(str(tmp_path), record)
    assert records.read(path) == record
  assert os.path.basename(path) == "t__x__patch_multitask.json"
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert [(r["finetune"], r["test_accuracy"], r["trained_parameters"], r["artifact_bytes"],
           r["images_per_second"], r["finetune_seconds"]) for r in rows] == [
      ("full", "0.9", "1000", "4000", "250.0", "4.0"),
      ("patch", "0.65", "40", "2600", "250.0", "4.0"),
      ("patch_multitask", "0.64", "40", "2600", "500.0", "2.0")]
  summary = report.summarize(str(tmp_path))
  assert "| x (patch_multitask) | 64.0 ±9.2 |" in summary
  assert summary.index("| x (patch) |") < summary.index("| x (patch_multitask) |")
  assert ("| t | x | patch_multitask | 64.0 ±9.2 | vs patch: no significant difference, -1.0 "
          "[-5.0, +3.0], p=1 | 40 | 2.6 kB | 500 | 2 |") in summary
  assert "| t | x | patch | 65.0 ±9.2 | worse, -25.0 [" in summary  # patch still against full
  assert ("- t: patch_multitask (x) vs patch (x): no significant difference, -1.0 points, "
          "95% CI [-5.0, +3.0], exact McNemar p=1 (1 vs 2 discordant of 100)") in summary
  # Without the single-task patch run there is nothing to pair the multi-task one with.
  os.remove(tmp_path / "t__x__patch.json")
  assert "| t | x | patch_multitask | 64.0 ±9.2 | vs patch: - | 40 |" in report.summarize(
      str(tmp_path))


def test_multitask_part_comes_with_the_multitask_mode_only():
  with pytest.raises(records.RecordError, match="multitask=missing"):
    result_records.make(finetune=records.MULTITASK)
  with pytest.raises(records.RecordError, match="finetune='patch', multitask=present"):
    result_records.make(finetune="patch", multitask=_multitask_part(None, None))
  with pytest.raises(records.RecordError, match="within_single_interval"):
    records.ResultRecord.from_json({**result_records.make(
        finetune=records.MULTITASK, multitask=_multitask_part(True, 0.0)).to_json(),
        "multitask": {**dataclasses.asdict(_multitask_part(True, 0.0)),
                      "within_single_interval": "yes"}})
