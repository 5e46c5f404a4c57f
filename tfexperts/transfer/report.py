"""Results records of bin/vtab_eval on disk and the paper-style summary table.

A record (`records.ResultRecord`: one JSON file per task and selection, plus a row in results.csv)
holds the task, the proxy scores of every expert, each proxy's pick, the fine-tuned experts with
their sweep and test accuracy, times and versions. A record that compares strategies
(all_experts, all_proxies: `strategy_accuracy`) gives the accuracy of every strategy whose pick it
fine-tuned; an `all_experts` record fine-tunes every expert, so the accuracy of any selection
strategy on that task is the accuracy of the expert it picks.

Every test accuracy carries its 95% Wilson interval on the test size (`test_interval`,
`strategy_interval`); the table shows it as `78.6 ±2.5` (half the interval's width, in points),
the plot as error bars. Records older than the intervals show none. A record whose fine-tuning
diverged (`diverged`: every sweep point or the final retrain of its expert had a non-finite loss)
has no accuracy: its results.csv row leaves the accuracy empty with `diverged` = yes (rows written
before that column existed read as empty), and its table cell says `diverged`. Paired verdicts
(`comparisons`) compare two strategies' experts on the same test examples: exact McNemar for the
verdict, Newcombe's interval for the difference (see `stats`).
"""
import csv
import io
import os
import statistics

import numpy as np
import tensorflow as tf

from tfexperts import errors
from tfexperts import fileio
from tfexperts.transfer import records as records_lib
from tfexperts.transfer import stats

GROUPS = ("natural", "specialized", "structured", "offline")
STRATEGY_ORDER = ("baseline", "random", "knn", "label_matching", "domain", "knn_topk", "oracle")
CSV_FIELDS = ("task", "group", "selection", "chosen", "test_accuracy", "test_low", "test_high",
              "test_size", "baseline_accuracy", "selection_seconds", "finetune_seconds", "record",
              "diverged")
# Paired comparisons recorded for a multi-expert record: (strategy, against), when both ran.
COMPARISONS = (("knn", "baseline"), ("knn", "random"), ("knn_topk", "knn"),
               ("knn_topk", "baseline"), ("label_matching", "baseline"), ("domain", "baseline"),
               ("random", "baseline"))


def record_path(results_dir, task, selection):
  """Where the JSON record of `task` under `selection` lives."""
  return os.path.join(results_dir, f"{task}__{selection}.json")


def write_record(results_dir, record):
  """Writes `record` (a `records.ResultRecord`) as JSON (atomically) and appends its row to
  results.csv; returns the path.

  A results.csv with an older header is rewritten with the current one (old rows keep their
  values, new columns stay empty). Processes writing records to one local results_dir at once
  take turns (a lock file beside results.csv), so no row is lost.
  """
  if not isinstance(record, records_lib.ResultRecord):
    raise TypeError(f"`record` must be a ResultRecord. Received: {type(record).__name__}")
  path = record_path(results_dir, record.task, record.selection)
  fileio.write_json_atomic(path, record.to_json())
  csv_path = os.path.join(results_dir, "results.csv")
  with fileio.exclusive(csv_path + ".lock"):  # evaluations running side by side append too
    _append_row(csv_path, record, path)
  return path


def _append_row(csv_path, record, path):
  rows = []
  if tf.io.gfile.exists(csv_path):
    with tf.io.gfile.GFile(csv_path) as f:
      rows = list(csv.DictReader(f))
  baseline = (record.strategy_accuracy or {}).get("baseline")
  low, high = record.test_interval or (None, None)
  rows.append({"task": record.task, "group": record.group,
               "selection": record.selection, "chosen": ";".join(record.chosen),
               "test_accuracy": record.test_accuracy, "test_low": low, "test_high": high,
               "test_size": record.test_size, "baseline_accuracy": baseline,
               "selection_seconds": round(record.times["selection_seconds"], 2),
               "finetune_seconds": round(record.times["finetune_seconds"], 2),
               "record": os.path.basename(path),
               "diverged": "yes" if record.diverged else "no"})
  out = io.StringIO()
  writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(rows)
  fileio.write_bytes_atomic(csv_path, out.getvalue().encode())


def expert_correct(result):
  """The per-example test correctness (bool array) of one `per_expert` entry, or None."""
  packed = (result or {}).get("test_correct") or {}
  if not packed.get("bits") or not result.get("test_size"):
    return None
  return stats.unpack_correct(packed["bits"], result["test_size"])


def paired_comparisons(per_expert, picks, pairs=COMPARISONS):
  """Paired verdicts of strategies whose picks were fine-tuned, on the same test examples.

  Args:
    per_expert: `{expert: run_protocol result}` (with `test_correct`).
    picks: `{strategy: expert}` (e.g. knn -> adapter_x, baseline -> baseline).
    pairs: `(strategy, against)` pairs; pairs with a missing side are skipped.

  Returns:
    A list of dicts: `strategy`, `against`, their experts, `same_expert`, and `stats.compare`'s
    difference, interval, p_value, discordant counts and verdict.
  """
  out = []
  for strategy, against in pairs:
    a, b = picks.get(strategy), picks.get(against)
    if a is None or b is None:
      continue
    correct_a, correct_b = expert_correct(per_expert.get(a)), expert_correct(per_expert.get(b))
    if correct_a is None or correct_b is None or correct_a.size != correct_b.size:
      continue
    out.append({"strategy": strategy, "against": against, "expert": a, "against_expert": b,
                "same_expert": a == b, **stats.compare(correct_a, correct_b)})
  return out


def verdict_text(comparison):
  """One line: `knn (x) vs baseline (y): better, +3.1 points [0.4, 5.8], McNemar p=0.02`."""
  c = comparison
  if c["same_expert"]:
    return (f"{c['strategy']} vs {c['against']}: no significant difference (both picked "
            f"{c['expert']})")
  low, high = c["interval"]
  return (f"{c['strategy']} ({c['expert']}) vs {c['against']} ({c['against_expert']}): "
          f"{c['verdict']}, {100 * c['difference']:+.1f} points, 95% CI "
          f"[{100 * low:+.1f}, {100 * high:+.1f}], exact McNemar p={c['p_value']:.3g} "
          f"({c['only_a']} vs {c['only_b']} discordant of {c['n']})")


DIVERGED = "diverged"  # a table value in place of an accuracy


def read_records(results_dir):
  """All `records.ResultRecord`s in `results_dir`, sorted by task then selection.

  Raises `records.RecordError` naming a file that is not JSON or not a valid record.
  """
  paths = sorted(tf.io.gfile.glob(os.path.join(results_dir, "*__*.json")))
  return [records_lib.read(p) for p in paths]


def kendall_tau(scores, accuracies):
  """Kendall's tau-b between a proxy's scores and test accuracies over their common experts."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  common = sorted(set(scores) & set(accuracies))
  if len(common) < 2:
    return None
  tau = stats.kendalltau([scores[e] for e in common], [accuracies[e] for e in common]).statistic
  return None if np.isnan(tau) else float(tau)


def strategy_table(records, intervals=False):
  """`{strategy: {task: accuracy}}` and `{task: group}` from a list of records.

  Records comparing strategies (all_experts, all_proxies: `strategy_accuracy`) give every
  strategy they recorded (baseline, random, knn, ..., oracle); the others give their own
  selection. A later record never hides an earlier value of another selection. With `intervals`,
  the values are `(accuracy, (low, high) or None)`.
  """
  table, groups = {}, {}
  for record in records:
    groups[record.task] = record.group
    compares = record.strategy_accuracy is not None
    if record.diverged and not compares:
      table.setdefault(record.selection, {}).setdefault(  # never hides an accuracy
          record.task, (DIVERGED, None) if intervals else DIVERGED)
      continue
    if compares:
      values, bounds = record.strategy_accuracy, record.strategy_interval or {}
    else:
      values = {record.selection: record.test_accuracy}
      bounds = {record.selection: record.test_interval}
    for strategy, accuracy in values.items():
      if accuracy is not None:
        bound = tuple(bounds[strategy]) if bounds.get(strategy) else None
        table.setdefault(strategy, {})[record.task] = (
            (accuracy, bound) if intervals else accuracy)
  return table, groups


def _ordered(strategies):
  known = [s for s in STRATEGY_ORDER if s in strategies]
  return known + sorted(s for s in strategies if s not in STRATEGY_ORDER)


def _cell(accuracy, bound):
  if accuracy == DIVERGED:
    return DIVERGED
  if bound is None:
    return f"{100 * accuracy:.1f}"
  return f"{100 * accuracy:.1f} ±{100 * (bound[1] - bound[0]) / 2:.1f}"


def _mean_cell(cells):
  """Mean accuracy of tasks, with a normal-approximation half-width from their intervals."""
  cells = [c for c in cells if c[0] != DIVERGED]
  if not cells:
    return "-"
  mean = statistics.mean(a for a, _ in cells)
  if any(b is None for _, b in cells):
    return f"{100 * mean:.1f}"
  half = (sum(((b[1] - b[0]) / 2) ** 2 for _, b in cells)) ** 0.5 / len(cells)
  return f"{100 * mean:.1f} ±{100 * half:.1f}"


def markdown_table(records):
  """The paper's table as Markdown: test accuracy (%) ± half its 95% interval per task, per
  group mean and overall mean."""
  table, groups = strategy_table(records, intervals=True)
  tasks = sorted(groups, key=lambda t: (GROUPS.index(groups[t]) if groups[t] in GROUPS else 9, t))
  present_groups = [g for g in GROUPS if g in groups.values()]
  header = ["strategy"] + tasks + [f"mean {g}" for g in present_groups] + ["mean"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for strategy in _ordered(table):
    row = table[strategy]
    cells = [_cell(*row[t]) if t in row else "-" for t in tasks]
    for group in present_groups:
      cells.append(_mean_cell([row[t] for t in tasks if groups[t] == group and t in row]))
    cells.append(_mean_cell(list(row.values())))
    lines.append("| " + " | ".join([strategy] + cells) + " |")
  return "\n".join(lines) + "\n"


def verdicts_markdown(records):
  """The paired verdicts of all records as a Markdown list (empty string if none)."""
  lines = [f"- {r.task}: {verdict_text(c)}" for r in records for c in r.comparisons or []]
  return "\n".join(lines) + "\n" if lines else ""


def plot_table(records, path):
  """Grouped bar chart of test accuracy per task and strategy with 95% interval error bars,
  written atomically as PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  table, groups = strategy_table(records, intervals=True)
  tasks = sorted(groups)
  strategies = _ordered(table)
  fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) + 2), 4))
  width = 0.8 / max(len(strategies), 1)
  for i, strategy in enumerate(strategies):
    cells = [table[strategy].get(t, (np.nan, None)) for t in tasks]
    cells = [(np.nan, None) if a == DIVERGED else (a, b) for a, b in cells]
    values = np.array([100 * a for a, _ in cells])
    error_bars = np.array([[100 * (a - b[0]), 100 * (b[1] - a)] if b else [np.nan, np.nan]
                           for a, b in cells]).T
    ax.bar(np.arange(len(tasks)) + i * width, values, width, label=strategy, yerr=error_bars,
           capsize=2, error_kw={"elinewidth": 0.8})
  ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2)
  ax.set_xticklabels(tasks)
  ax.set_ylabel("test accuracy (%), 95% interval")
  ax.legend(fontsize=8)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  return fileio.write_bytes_atomic(path, buffer.getvalue())


def knn_accuracy_by_task(records):
  """`{task: {expert: kNN leave-one-out accuracy}}` from the records' proxy scores."""
  return {r.task: r.proxy_scores["knn"] for r in records if r.proxy_scores.get("knn")}


def summarize(results_dir):
  """Writes summary.md, summary.png and (with kNN scores) knn_heatmap.png in `results_dir`.

  Returns the Markdown table.
  """
  from tfexperts.select import plots  # pylint: disable=g-import-not-at-top
  records = read_records(results_dir)
  if not records:
    raise errors.MissingFileError(f"No vtab_eval records (*__*.json) in {results_dir!r}.")
  markdown = markdown_table(records)
  markdown += ("\n± is half the width of the 95% Wilson interval on the test size (means: "
               "normal approximation).\n")
  verdicts = verdicts_markdown(records)
  if verdicts:
    markdown += ("\nPaired verdicts (same test examples; exact McNemar at 0.05, Newcombe 95% "
                 "interval of the difference):\n\n" + verdicts)
  fileio.write_bytes_atomic(os.path.join(results_dir, "summary.md"), markdown.encode())
  plot_table(records, os.path.join(results_dir, "summary.png"))
  knn = knn_accuracy_by_task(records)
  if knn:
    plots.plot_heatmap(knn, os.path.join(results_dir, "knn_heatmap.png"),
                       title="kNN leave-one-out accuracy (expert x task)")
  return markdown
