"""The paper-style summary: strategies x tasks with group means, from hand-made records."""
import csv

from tfexperts.transfer import report


def _record(task, group, selection, accuracy, strategy_accuracy=None, chosen=("x",)):
  return {"task": task, "group": group, "selection": selection, "chosen": list(chosen),
          "test_accuracy": accuracy, "strategy_accuracy": strategy_accuracy or {},
          "proxy_scores": {"knn": {"x": accuracy / 2, "y": 0.1}},
          "times": {"selection_seconds": 1.0, "finetune_seconds": 2.0}}


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
  assert report.read_records(str(tmp_path)) == sorted(
      RECORDS, key=lambda r: (r["task"], r["selection"]))
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
