"""Results records of bin/vtab_eval and the paper-style summary table.

A record (one JSON file per task and selection, plus a row in results.csv) holds the task, the
proxy scores of every expert, each proxy's pick, the fine-tuned experts with their sweep and test
accuracy, times and versions. An `all_experts` record fine-tunes every expert, so the accuracy of
any selection strategy on that task is the accuracy of the expert it picks.
"""
import csv
import io
import os
import statistics

import numpy as np
import tensorflow as tf

from tfexperts import fileio

GROUPS = ("natural", "specialized", "structured", "offline")
STRATEGY_ORDER = ("baseline", "random", "knn", "label_matching", "domain", "oracle")
CSV_FIELDS = ("task", "group", "selection", "chosen", "test_accuracy", "baseline_accuracy",
              "selection_seconds", "finetune_seconds", "record")


def record_path(results_dir, task, selection):
  """Where the JSON record of `task` under `selection` lives."""
  return os.path.join(results_dir, f"{task}__{selection}.json")


def write_record(results_dir, record):
  """Writes `record` as JSON (atomically) and appends its row to results.csv; returns the path."""
  path = record_path(results_dir, record["task"], record["selection"])
  fileio.write_json_atomic(path, record)
  csv_path = os.path.join(results_dir, "results.csv")
  old = ""
  if tf.io.gfile.exists(csv_path):
    with tf.io.gfile.GFile(csv_path) as f:
      old = f.read()
  out = io.StringIO()
  writer = csv.DictWriter(out, CSV_FIELDS)
  if not old:
    writer.writeheader()
  baseline = record.get("strategy_accuracy", {}).get("baseline")
  writer.writerow({"task": record["task"], "group": record["group"],
                   "selection": record["selection"], "chosen": ";".join(record["chosen"]),
                   "test_accuracy": record["test_accuracy"], "baseline_accuracy": baseline,
                   "selection_seconds": round(record["times"]["selection_seconds"], 2),
                   "finetune_seconds": round(record["times"]["finetune_seconds"], 2),
                   "record": os.path.basename(path)})
  fileio.write_bytes_atomic(csv_path, (old + out.getvalue()).encode())
  return path


def read_records(results_dir):
  """All JSON records in `results_dir`, sorted by task then selection."""
  paths = sorted(tf.io.gfile.glob(os.path.join(results_dir, "*__*.json")))
  return [fileio.read_json(p) for p in paths]


def kendall_tau(scores, accuracies):
  """Kendall's tau-b between a proxy's scores and test accuracies over their common experts."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  common = sorted(set(scores) & set(accuracies))
  if len(common) < 2:
    return None
  tau = stats.kendalltau([scores[e] for e in common], [accuracies[e] for e in common]).statistic
  return None if np.isnan(tau) else float(tau)


def strategy_table(records):
  """`{strategy: {task: accuracy}}` and `{task: group}` from a list of records.

  `all_experts` records give every strategy they recorded (baseline, random, knn, ..., oracle);
  single-selection records give their own strategy. A later record never hides an earlier value
  of another selection.
  """
  table, groups = {}, {}
  for record in records:
    groups[record["task"]] = record["group"]
    values = dict(record.get("strategy_accuracy") or {})
    if record["selection"] not in ("all_experts", "all_proxies"):
      values = {record["selection"]: record["test_accuracy"]}
    for strategy, accuracy in values.items():
      if accuracy is not None:
        table.setdefault(strategy, {})[record["task"]] = accuracy
  return table, groups


def _ordered(strategies):
  known = [s for s in STRATEGY_ORDER if s in strategies]
  return known + sorted(s for s in strategies if s not in STRATEGY_ORDER)


def markdown_table(records):
  """The paper's table as Markdown: test accuracy (%) per task, per group mean and overall mean."""
  table, groups = strategy_table(records)
  tasks = sorted(groups, key=lambda t: (GROUPS.index(groups[t]) if groups[t] in GROUPS else 9, t))
  present_groups = [g for g in GROUPS if g in groups.values()]
  header = ["strategy"] + tasks + [f"mean {g}" for g in present_groups] + ["mean"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for strategy in _ordered(table):
    row = table[strategy]
    cells = [f"{100 * row[t]:.1f}" if t in row else "-" for t in tasks]
    for group in present_groups:
      values = [row[t] for t in tasks if groups[t] == group and t in row]
      cells.append(f"{100 * statistics.mean(values):.1f}" if values else "-")
    cells.append(f"{100 * statistics.mean(row.values()):.1f}" if row else "-")
    lines.append("| " + " | ".join([strategy] + cells) + " |")
  return "\n".join(lines) + "\n"


def plot_table(records, path):
  """Grouped bar chart of test accuracy per task and strategy, written atomically as PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  table, groups = strategy_table(records)
  tasks = sorted(groups)
  strategies = _ordered(table)
  fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) + 2), 4))
  width = 0.8 / max(len(strategies), 1)
  for i, strategy in enumerate(strategies):
    values = [100 * table[strategy].get(t, np.nan) for t in tasks]
    ax.bar(np.arange(len(tasks)) + i * width, values, width, label=strategy)
  ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2)
  ax.set_xticklabels(tasks)
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  return fileio.write_bytes_atomic(path, buffer.getvalue())


def knn_accuracy_by_task(records):
  """`{task: {expert: kNN leave-one-out accuracy}}` from the records' proxy scores."""
  return {r["task"]: r["proxy_scores"]["knn"] for r in records
          if (r.get("proxy_scores") or {}).get("knn")}


def summarize(results_dir):
  """Writes summary.md, summary.png and (with kNN scores) knn_heatmap.png in `results_dir`.

  Returns the Markdown table.
  """
  from tfexperts.select import plots  # pylint: disable=g-import-not-at-top
  records = read_records(results_dir)
  if not records:
    raise FileNotFoundError(f"No vtab_eval records (*__*.json) in {results_dir!r}.")
  markdown = markdown_table(records)
  fileio.write_bytes_atomic(os.path.join(results_dir, "summary.md"), markdown.encode())
  plot_table(records, os.path.join(results_dir, "summary.png"))
  knn = knn_accuracy_by_task(records)
  if knn:
    plots.plot_heatmap(knn, os.path.join(results_dir, "knn_heatmap.png"),
                       title="kNN leave-one-out accuracy (expert x task)")
  return markdown
