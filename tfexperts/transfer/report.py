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

Fine-tuning modes (`ProtocolConfig.finetune`: full, patch, adapter, head): a record holds one mode
(`finetune`); the records of the other modes than full live beside full's
(`<task>__<selection>__<mode>.json`, full's keeps its name), results.csv has a `finetune` column
(rows written before it read as full) and the mode's cost (trained parameters, stored bytes per
task, training images/s; `finetune_seconds` is the wall time), the table a row per strategy and
mode (`knn (patch)`), and when a task's expert was fine-tuned in a mode other than full, the
summary adds a table of its modes: accuracy, the paired verdict against full on the same test
examples (when the expert's full run is in the results too), trained parameters, bytes, images/s
and seconds.

A multi-task patch run's task (`records.MULTITASK`, `patch_multitask`) is a mode of its own: its
record lives beside the others (`<task>__<expert>__patch_multitask.json`), its results.csv row
says `patch_multitask` with its own trained parameters and bytes, the joint run's images/s and
its share of the joint run's wall time, and in the modes table its verdict is against the
single-task `patch` run of the same expert (`REFERENCE_MODES`; the cell says `vs patch:`).
"""
import csv
import io
import os
import statistics

import numpy as np
import tensorflow as tf

from tfexperts import defaults
from tfexperts import errors
from tfexperts import fileio
from tfexperts.transfer import records as records_lib
from tfexperts.transfer import stats

GROUPS = ("natural", "specialized", "structured", "offline")
STRATEGY_ORDER = ("baseline", "random", "knn", "label_matching", "domain", "knn_topk", "oracle")
FULL = defaults.FINETUNE  # "full", the mode others are compared with
# The mode a mode's paired verdict is against when not full: a multi-task patch against the
# single-task patch run of the same task and expert.
REFERENCE_MODES = {records_lib.MULTITASK: "patch"}
CSV_FIELDS = ("task", "group", "selection", "finetune", "chosen", "test_accuracy", "test_low",
              "test_high", "test_size", "baseline_accuracy", "trained_parameters",
              "artifact_bytes", "images_per_second", "selection_seconds", "finetune_seconds",
              "record", "diverged")
# Paired comparisons recorded for a multi-expert record: (strategy, against), when both ran.
COMPARISONS = (("knn", "baseline"), ("knn", "random"), ("knn_topk", "knn"),
               ("knn_topk", "baseline"), ("label_matching", "baseline"), ("domain", "baseline"),
               ("random", "baseline"))


def record_path(results_dir, task, selection, finetune=FULL):
  """Where the JSON record of `task` under `selection` in mode `finetune` lives (the mode is in
  the name unless full, so results dirs written before the modes keep their names)."""
  mode = "" if finetune == FULL else f"__{finetune}"
  return os.path.join(results_dir, f"{task}__{selection}{mode}.json")


def write_record(results_dir, record):
  """Writes `record` (a `records.ResultRecord`) as JSON (atomically) and appends its row to
  results.csv; returns the path.

  A results.csv with an older header is rewritten with the current one (old rows keep their
  values, new columns stay empty but `finetune`: full, the only mode of that time). Processes writing records to one local results_dir at once
  take turns (a lock file beside results.csv), so no row is lost.
  """
  if not isinstance(record, records_lib.ResultRecord):
    raise TypeError(f"`record` must be a ResultRecord. Received: {type(record).__name__}")
  path = record_path(results_dir, record.task, record.selection, record.finetune)
  fileio.write_json_atomic(path, record.to_json())
  csv_path = os.path.join(results_dir, "results.csv")
  with fileio.exclusive(csv_path + ".lock"):  # evaluations running side by side append too
    _append_row(csv_path, record, path)
  return path


def _append_row(csv_path, record, path):
  rows = []
  if tf.io.gfile.exists(csv_path):
    with tf.io.gfile.GFile(csv_path) as f:
      rows = [{**row, "finetune": row.get("finetune") or FULL} for row in csv.DictReader(f)]
  baseline = (record.strategy_accuracy or {}).get("baseline")
  low, high = record.test_interval or (None, None)
  reported = reported_result(record)
  rate = reported.get("images_per_second")
  rows.append({"task": record.task, "group": record.group,
               "selection": record.selection, "finetune": record.finetune,
               "chosen": ";".join(record.chosen),
               "test_accuracy": record.test_accuracy, "test_low": low, "test_high": high,
               "test_size": record.test_size, "baseline_accuracy": baseline,
               "trained_parameters": reported.get("trained_parameters"),
               "artifact_bytes": reported.get("artifact_bytes"),
               "images_per_second": None if rate is None else round(rate, 1),
               "selection_seconds": round(record.times["selection_seconds"], 2),
               "finetune_seconds": round(record.times["finetune_seconds"], 2),
               "record": os.path.basename(path),
               "diverged": "yes" if record.diverged else "no"})
  out = io.StringIO()
  writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(rows)
  fileio.write_bytes_atomic(csv_path, out.getvalue().encode())


def reported_result(record):
  """The `per_expert` result whose test accuracy `record` reports (the first chosen expert with
  it), or {} when the record has no accuracy."""
  return next((record.per_expert[name] for name in record.chosen
               if record.test_accuracy is not None and name in record.per_expert
               and record.per_expert[name].get("test_accuracy") == record.test_accuracy), {})


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
    compared = compare_results(per_expert.get(a), per_expert.get(b))
    if compared is not None:
      out.append({"strategy": strategy, "against": against, "expert": a, "against_expert": b,
                  "same_expert": a == b, **compared})
  return out


def compare_results(result_a, result_b):
  """`stats.compare` of two `per_expert` (protocol-shaped) results on the same test examples, or None when either
  lacks its per-example correctness or their test sizes differ."""
  correct_a, correct_b = expert_correct(result_a), expert_correct(result_b)
  if correct_a is None or correct_b is None or correct_a.size != correct_b.size:
    return None
  return stats.compare(correct_a, correct_b)


def mode_results(records):
  """`{(task, expert): {finetune: per_expert result}}` for every expert of a task fine-tuned in
  a mode other than full, its modes in `records.RECORD_MODES` order (the first record of a
  task, expert and mode gives its result; records come sorted by task and selection)."""
  by_expert = {}
  for record in records:
    for expert, result in record.per_expert.items():
      by_expert.setdefault((record.task, expert), {}).setdefault(record.finetune, result)
  return {key: {m: modes[m] for m in records_lib.RECORD_MODES if m in modes}
          for key, modes in by_expert.items() if set(modes) != {FULL}}


def reference_mode(finetune):
  """The mode `finetune`'s paired verdict is against: `REFERENCE_MODES`' entry, else full."""
  return REFERENCE_MODES.get(finetune, FULL)


def mode_comparison(task, expert, result, reference_result, finetune):
  """The paired verdict of `expert`'s run in mode `finetune` (`result`) against its run in
  `reference_mode(finetune)` (`reference_result`) on the same test examples, in
  `paired_comparisons`' form (strategy: the mode, against: the reference mode), or None when
  they cannot be paired."""
  compared = compare_results(result, reference_result)
  if compared is None:
    return None
  return {"task": task, "strategy": finetune, "against": reference_mode(finetune),
          "expert": expert, "against_expert": expert, "same_expert": False, **compared}


def mode_comparisons(records):
  """The paired verdicts of every non-full mode against its reference mode (`mode_comparison`:
  full, or patch for a multi-task patch) in `records`, when both ran."""
  out = []
  for (task, expert), modes in mode_results(records).items():
    for finetune, result in modes.items():
      reference = reference_mode(finetune)
      if finetune != FULL and reference in modes:
        compared = mode_comparison(task, expert, result, modes[reference], finetune)
        out += [compared] if compared else []
  return out


def _size_text(nbytes):
  """`nbytes` as `512 B`, `182.0 kB`, `94.1 MB` (powers of 1000)."""
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if nbytes >= scale:
      return f"{nbytes / scale:.1f} {unit}"
  return f"{nbytes} B"


def _short_verdict(comparison):
  """`worse, -3.1 [-5.6, -0.6], p=0.02` (points), or `-` for None."""
  if comparison is None:
    return "-"
  low, high = comparison["interval"]
  return (f"{comparison['verdict']}, {100 * comparison['difference']:+.1f} "
          f"[{100 * low:+.1f}, {100 * high:+.1f}], p={comparison['p_value']:.2g}")


def mode_table_rows(records):
  """The rows of the modes table (`modes_markdown`): per task, expert and mode, the cells task,
  expert, finetune, test accuracy ±, verdict vs full (vs its reference mode, prefixed `vs
  <mode>: `, when that is not full), trained parameters, stored bytes, train images/s and
  seconds (`-` for what a run did not record)."""
  verdicts = {(c["task"], c["expert"], c["strategy"]): c for c in mode_comparisons(records)}
  rows = []
  for (task, expert), modes in mode_results(records).items():
    for finetune, result in modes.items():
      accuracy = result.get("test_accuracy")
      interval = result.get("test_interval")
      params, nbytes = result.get("trained_parameters"), result.get("artifact_bytes")
      rate = result.get("images_per_second")
      reference = reference_mode(finetune)
      rows.append([task, expert, finetune,
                   DIVERGED if accuracy is None else _cell(accuracy, interval),
                   "(reference)" if finetune == FULL else
                   ("" if reference == FULL else f"vs {reference}: ") + _short_verdict(
                       verdicts.get((task, expert, finetune))),
                   "-" if params is None else f"{params:,}",
                   "-" if nbytes is None else _size_text(nbytes),
                   "-" if rate is None else f"{rate:.0f}", f"{result['seconds']:.0f}"])
  return rows


MODE_HEADER = ("task", "expert", "finetune", "test accuracy", "vs full (points, 95% CI, p)",
               "trained parameters", "stored bytes", "train images/s", "seconds")


def modes_markdown(records, expert=None):
  """The fine-tuning modes of the experts fine-tuned in a mode other than full (only `expert`'s
  when given) as a Markdown table (`mode_table_rows`), or "" when there are none."""
  rows = [row for row in mode_table_rows(records) if expert in (None, row[1])]
  if not rows:
    return ""
  lines = ["| " + " | ".join(MODE_HEADER) + " |", "|" + "---|" * len(MODE_HEADER)]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


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
  """`{row: {task: accuracy}}` and `{task: group}` from a list of records.

  A row is a strategy, with its mode when not full (`knn (patch)`, `row_label`). Records
  comparing strategies (all_experts, all_proxies: `strategy_accuracy`) give every strategy they
  recorded (baseline, random, knn, ..., oracle); the others give their own selection. A later
  record never hides an earlier value of another selection. With `intervals`, the values are
  `(accuracy, (low, high) or None)`.
  """
  table, groups = {}, {}
  for record in records:
    groups[record.task] = record.group
    compares = record.strategy_accuracy is not None
    if record.diverged and not compares:
      table.setdefault(row_label(record.selection, record.finetune), {}).setdefault(  # never hides an accuracy
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
        table.setdefault(row_label(strategy, record.finetune), {})[record.task] = (
            (accuracy, bound) if intervals else accuracy)
  return table, groups


def row_label(strategy, finetune):
  """A table row's name: `strategy`, with ` (mode)` when `finetune` is not full."""
  return strategy if finetune == FULL else f"{strategy} ({finetune})"


def _ordered(labels):
  """Table rows in STRATEGY_ORDER (others by name), each strategy's modes after it."""
  def key(label):
    strategy, finetune = label, FULL
    for mode in records_lib.RECORD_MODES:
      if label.endswith(f" ({mode})"):
        strategy, finetune = label[:-len(mode) - 3], mode
    known = strategy in STRATEGY_ORDER
    return (not known, STRATEGY_ORDER.index(strategy) if known else 0, strategy,
            records_lib.RECORD_MODES.index(finetune))
  return sorted(labels, key=key)


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
  """The paired verdicts of all records (then of each mode against full, `mode_comparisons`)
  as a Markdown list (empty string if none)."""
  lines = [f"- {r.task}: {verdict_text(c)}" for r in records for c in r.comparisons or []]
  lines += [f"- {c['task']}: {verdict_text(c)}" for c in mode_comparisons(records)]
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
  modes = modes_markdown(records)
  if modes:
    markdown += ("\nFine-tuning modes of the experts fine-tuned in a mode other than full (vs "
                 "full: paired on the same test examples; stored bytes: what one task keeps, "
                 "full: the whole model):\n\n" + modes)
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
