"""The results record: strict keys and types, and results directories written before it existed."""
import csv
import json
import os
import shutil

import pytest

from tfexperts.transfer import records
from tfexperts.transfer import report

# bin/vtab_eval's results on shapes_fine_tiny (the tiny exported collection, quick protocol)
# written by the code before `records` existed: all_experts, knn_topk, knn, an expert's name
# (patch_animal) and dat, in that order, with the results.csv and summary.md it wrote.
OLD_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                           "old_results")
SELECTIONS = ("all_experts", "knn_topk", "knn", "patch_animal", "dat")


def _old(selection):
  with open(report.record_path(OLD_RESULTS, "shapes_fine_tiny", selection)) as f:
    return json.load(f)


def test_old_records_load_and_write_back_their_keys_unchanged():
  for selection in SELECTIONS:
    data = _old(selection)
    record = records.ResultRecord.from_json(data, where=selection)
    assert record.selection == selection and record.format == records.FORMAT
    written = record.to_json()
    added = set(written) - set(data)  # the format, and what the older reader filled in
    assert added <= {"format"} | set(records.OLDER_DEFAULTS), added
    assert {k: written[k] for k in data} == data
  dat = records.read(report.record_path(OLD_RESULTS, "shapes_fine_tiny", "dat"))
  assert dat.precision is None and dat.proxy_seconds is None and dat.resolution is None
  assert dat.dat.knn_selection["num_experts"] == 2 and dat.dat.upstream_training_over_knn > 0
  topk = records.read(report.record_path(OLD_RESULTS, "shapes_fine_tiny", "knn_topk"))
  assert topk.topk.pick == topk.chosen[0] == topk.picks["knn_topk"]
  assert topk.regret == {"knn_topk": 0.0}  # against the all_experts record written before it


def test_old_results_dir_gives_todays_summary_and_csv(tmp_path):
  results = str(tmp_path / "old")
  shutil.copytree(OLD_RESULTS, results)
  with open(os.path.join(OLD_RESULTS, "summary.md")) as f:
    assert report.summarize(results) == f.read()
  oracle = records.read(report.record_path(results, "shapes_fine_tiny", "all_experts"))
  # Paired comparisons decode the packed per-example correctness of each expert.
  assert {(c["strategy"], c["n"]) for c in oracle.comparisons} >= {("knn", 200)}
  assert report.paired_comparisons(oracle.per_expert, {"knn": oracle.picks["knn"],
                                                       "baseline": "baseline"}) == [
      c for c in oracle.comparisons if (c["strategy"], c["against"]) == ("knn", "baseline")]
  rewritten = str(tmp_path / "rewritten")
  for selection in SELECTIONS:
    report.write_record(rewritten, records.read(report.record_path(results, "shapes_fine_tiny",
                                                                   selection)))
  old_rows, new_rows = (list(csv.DictReader(open(os.path.join(d, "results.csv"))))
                        for d in (OLD_RESULTS, rewritten))
  # Today's rows add the mode (full, the only one then) and its cost, which old runs lack.
  added = {"finetune": "full", "trained_parameters": "", "artifact_bytes": "",
           "images_per_second": ""}
  assert new_rows == [{**row, **added} for row in old_rows]
  # An old results.csv gains the columns when a record is appended, its rows read as full.
  report.write_record(results, records.read(report.record_path(results, "shapes_fine_tiny",
                                                                "knn")))
  rows = list(csv.DictReader(open(os.path.join(results, "results.csv"))))
  assert [r["finetune"] for r in rows] == ["full"] * (len(old_rows) + 1)
  assert [{k: r[k] for k in old_rows[0]} for r in rows[:-1]] == old_rows


def test_records_of_format_2_read_as_full_and_a_mode_must_be_known():
  data = records.ResultRecord.from_json(_old("knn")).to_json()
  assert data["finetune"] == "full"
  del data["finetune"]
  data["format"] = records.RESULT_2
  assert records.ResultRecord.from_json(data).finetune == "full"
  del data["diverged"]  # result/2 had it: only `finetune` is filled in
  with pytest.raises(records.RecordError, match="missing key 'diverged'"):
    records.ResultRecord.from_json(data)
  data = {**records.ResultRecord.from_json(_old("knn")).to_json(), "finetune": "lora"}
  with pytest.raises(records.RecordError, match=r"'finetune' must be one of \['full', 'patch', "
                     r"'adapter', 'head', 'patch_multitask'\]. Received: 'lora'"):
    records.ResultRecord.from_json(data)


def test_an_unknown_key_is_an_error_naming_it_and_the_file(tmp_path):
  data = _old("knn")
  data["test_acuracy"] = data.pop("test_accuracy")
  path = tmp_path / "shapes_fine_tiny__knn.json"
  path.write_text(json.dumps(data))
  with pytest.raises(records.RecordError,
                     match=r"shapes_fine_tiny__knn.json: unknown key 'test_acuracy'"):
    records.read(str(path))
  data = _old("knn_topk")
  data["topk"]["pik"] = data["topk"].pop("pick")
  with pytest.raises(records.RecordError, match=r"topk: unknown key 'pik'"):
    records.ResultRecord.from_json(data)


def test_a_missing_key_is_an_error_naming_it(tmp_path):
  data = _old("knn")
  del data["num_experts"]
  with pytest.raises(records.RecordError, match="missing key 'num_experts'"):
    records.ResultRecord.from_json(data)
  data = _old("dat")
  del data["dat"]["handle"]
  with pytest.raises(records.RecordError, match=r"dat: missing key 'handle'"):
    records.ResultRecord.from_json(data)
  # Only a file written before `format` may lack what the older reader fills in.
  data = records.ResultRecord.from_json(_old("knn")).to_json()
  del data["diverged"]
  with pytest.raises(records.RecordError, match="missing key 'diverged'"):
    records.ResultRecord.from_json(data)
  older = _old("knn")
  del older["diverged"], older["precision"]
  record = records.ResultRecord.from_json(older)
  assert record.diverged is False and record.precision is None


def test_a_value_of_the_wrong_type_is_an_error_naming_the_key():
  data = _old("knn")
  data["test_size"] = "200"
  with pytest.raises(records.RecordError, match=r"key 'test_size' must be int. Received: '200'"):
    records.ResultRecord.from_json(data)
  data = _old("knn")
  data["diverged"] = 0
  with pytest.raises(records.RecordError, match=r"key 'diverged' must be bool"):
    records.ResultRecord.from_json(data)
  data = _old("knn")
  data["format"] = "tfexperts.transfer.result/9"
  with pytest.raises(records.RecordError, match="result/9"):
    records.ResultRecord.from_json(data)


def test_report_writes_only_result_records(tmp_path):
  with pytest.raises(TypeError, match="ResultRecord"):
    report.write_record(str(tmp_path), _old("knn"))
