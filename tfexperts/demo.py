"""The offline demo behind `make demo`: the whole pipeline on built-in data, on a CPU.

Each step calls in-process the library function its binary calls, so `tfexperts-demo` runs from
any install (no `bin/` needed):
1. builds the offline tfds datasets (upstream shapes hierarchy + downstream tasks) in WORKDIR/tfds
   (the downstream ones beside the baseline's training);
2. training (bin/train_experts, `train.workdir.train`): a small BiT baseline, then side by side
   (see below) the full experts of the 3 largest hierarchy branches, their adapter experts and
   the expert prediction network;
3. export (bin/export_experts, `hub.collection.export_workdir`): every expert as a TF-Hub module
   under export/demo/;
4. evaluation (bin/vtab_eval, `transfer.evaluate.run`) with the (quick) VTAB-1k protocol, side by
   side: --selection=all_experts on shapes_fine (every expert fine-tuned: the oracle, each
   strategy's regret, Kendall's tau, and knn_topk, i.e. short fine-tunes of kNN's top 3);
   --selection=all_proxies on shapes_mixed, and on shapes_count (kNN, label matching, domain
   prediction, random and knn_topk pick experts; the picks and the baseline are fine-tuned);
   --selection=dat on shapes_fine with a short upstream budget (Domain Adaptive Transfer's
   accuracy and its upstream fine-tuning cost against kNN selection); and kNN's pick on
   shapes_fine in the other fine-tuning modes, patch, adapter and head (--selection=knn
   --finetune=MODE, each mode's quick learning-rate grid, the same 100 steps: `evaluate_modes`).
   The paper-style table with 95% intervals is printed;
5. paired verdicts per task (each strategy's expert against the baseline's, random's and kNN's
   on the same test examples: better / no significant difference / worse, with the difference
   and its interval) and the cost of kNN selection against fine-tuning every expert, measured
   with the quick protocol and estimated for the full VTAB protocol; the fine-tuning modes of
   kNN's pick on shapes_fine (`modes_lines`): full (the all_experts run) vs patch vs adapter vs
   head, accuracy with interval, paired verdict vs full, trained parameters, stored bytes, time.
Side by side: one child process per part (`--part`), a group's parts all at once. Every process
runs TensorFlow on one thread: these small models are bound by per-op overhead, so a second
thread gains nothing (two fine-tuning protocols: 83 s on one thread, 93 s on TensorFlow's default
of two, on 2 cores), while independent processes use every core. Their output lines are prefixed
with the part's name and kept in WORKDIR/logs/. The timings the demo reports (selection,
fine-tuning, DAT) are taken while the parts share the cores, so they are longer than on an
otherwise idle machine.
Every step resumes: re-running `make demo` skips what is finished.

Usage: python -m tfexperts.demo [--workdir demo_work] [--export_dir export]
"""
import argparse
import os
import sys
import time

from tfexperts import startup_noise

ORACLE_TASK = "shapes_fine"
TASKS = (ORACLE_TASK, "shapes_mixed", "shapes_count")
# bin/train_experts --dataset=tfexperts_shapes/demo --model=tiny --resolution=64 --batch_size=64
# --baseline_steps=600 --expert_steps=200 --num_experts=3 --base_lr=0.4 --decay=cosine
# --warmup_steps=30 --checkpoint_every=100 --log_every=50 --stage=baseline,full,adapter,epn
TRAIN_SETTINGS = {"dataset": "tfexperts_shapes/demo", "model": "tiny", "resolution": 64,
                  "batch_size": 64, "baseline_steps": 600, "expert_steps": 200,
                  "num_experts": 3, "base_lr": 0.4, "decay": "cosine", "warmup_steps": 30,
                  "checkpoint_every": 100, "log_every": 50,
                  "stage": ["baseline", "full", "adapter", "epn"]}
EVAL_PROTOCOL = {"steps": (100,), "learning_rates": (0.3, 0.1)}  # on top of ProtocolConfig.quick
# --selection=dat --dat_steps=100 --dat_batch_size=64 --dat_lr=0.1: a short upstream budget for
# a CPU (checkpoints every 25 steps, progress every 10, as bin/vtab_eval derives them).
DAT_SETTINGS = {"steps": 100, "batch_size": 64, "base_lr": 0.1, "checkpoint_every": 25,
                "log_every": 10}
UPSTREAM_DATASET = "tfexperts_shapes/demo"
# kNN's pick on ORACLE_TASK in the modes other than full (full: the all_experts run), each with
# ProtocolConfig.quick's grid of the mode (2 learning rates) and the same 100 steps as full.
MODES = ("patch", "adapter", "head")
MODES_PROTOCOL = {"steps": (100,), "resolution": 64}


def _step(title, fn):
  """Runs `fn()` after printing `title`; returns the seconds it took."""
  start = time.perf_counter()
  print(f"\n$ {title}", flush=True)
  fn()
  return time.perf_counter() - start


def _read_record(results_dir, task, selection):
  from tfexperts.transfer import records  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  return records.read(report.record_path(results_dir, task, selection))


def _pct(record, strategy):
  accuracy = record.strategy_accuracy.get(strategy)
  if accuracy is None:
    return "diverged"
  low, high = record.strategy_interval.get(strategy) or (accuracy, accuracy)
  return f"{100 * accuracy:.1f}% ±{100 * (high - low) / 2:.1f}"


def _oracle_lines(record):
  """The all_experts summary: oracle, each strategy's pick and regret, tau, knn_topk's runs."""
  picks, regret, tau = record.picks, record.regret or {}, record.kendall_tau or {}
  finite = {e: r["test_accuracy"] for e, r in record.per_expert.items()
            if r.get("test_accuracy") is not None}
  if not finite:
    return [f"- {record.task}: every expert's fine-tuning diverged; no oracle."]
  oracle = max(finite, key=finite.get)
  lines = [f"- {record.task}: the oracle (every one of {record.num_experts} experts "
           f"fine-tuned) is {oracle} ({_pct(record, 'oracle')}; picked on the test split, so "
           "optimistic)."]
  for strategy in ("knn", "knn_topk", "label_matching", "domain", "random", "baseline"):
    if strategy in regret:
      expert = picks.get(strategy, strategy)
      tau_text = (f", Kendall's tau {tau[strategy]:+.2f}" if tau.get(strategy) is not None
                  else "")
      lines.append(f"  {strategy:15s} picked {expert:22s} {_pct(record, strategy):>13s}, regret "
                   f"{100 * regret[strategy]:.1f} points{tau_text}")
  topk = record.topk
  if topk:
    runs = ", ".join(f"{c['expert']} " + ("diverged" if c["val_accuracy"] is None else
                                          f"{100 * c['val_accuracy']:.1f}%")
                     for c in topk.candidates)
    lines.append(f"  knn_topk short runs ({topk.steps} steps at lr {topk.learning_rate:g}, "
                 f"val200): {runs} -> {topk.pick}; cost {topk.cost['seconds']:.0f}s, "
                 f"{topk.cost['images']} images")
  return lines


def _cost_lines(record, results_dir):
  """kNN selection against fine-tuning every expert: measured (quick) and estimated (full)."""
  from tfexperts.transfer import cost  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import protocol  # pylint: disable=g-import-not-at-top
  if record.test_size is None:
    return [f"- {record.task}: no cost ratio, the fine-tuning diverged."]
  finetune_all = sum(r["seconds"] for r in record.per_expert.values())
  # The feature pass also embeds the baseline's and EPN's logits (label matching, domain): a
  # slight overestimate of kNN's own cost, so the ratios below err low.
  knn_seconds = record.proxy_seconds["features"] + record.proxy_seconds["knn"]
  if not record.images_embedded:
    return ["- cost: the features came from the cache in this run, so selection was not timed "
            f"(delete {os.path.join(results_dir, 'features')} to re-measure)."]
  forward_per_second = record.images_embedded / record.proxy_seconds["features"]
  batch = record.config["batch_size"]
  trained = sum(batch * (sum(row["steps"] for row in r["sweep"])
                         + len(r["final"]) * (r["best"] or {}).get("steps", 0))
                for r in record.per_expert.values())
  train_per_second = trained / finetune_all
  full = cost.protocol_images(protocol.ProtocolConfig(), test_size=record.test_size)
  full_seconds = len(record.per_expert) * full.seconds(train_per_second, forward_per_second)
  return [f"- measured, quick protocol ({record.task}): kNN selection {knn_seconds:.1f}s vs "
          f"fine-tuning all {record.num_experts} experts {finetune_all:.0f}s: "
          f"{_times(finetune_all / knn_seconds)} (wall times while the evaluation parts shared "
          "the cores: the selection ran while all of them did, the fine-tuning while fewer and "
          "fewer did, so this ratio errs low)",
          f"- estimated, full VTAB protocol (2 lr x 2500/10000 steps at batch 512, 3 retrains of "
          f"10000 steps; "
          f"this run's {forward_per_second:.0f} forward and {train_per_second:.0f} training "
          f"images/s; training rate from whole runs, loading and evaluation included, so it "
          f"errs high): {full_seconds / 3600:.1f} h "
          f"vs {knn_seconds:.1f}s: {_times(full_seconds / knn_seconds)}. At R50x1 / 224 px "
          "scale: python bench/cost.py"]


def _verdicts(results_dir):
  """The oracle summary, the paired verdicts of every task and the cost ratios, as text."""
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  oracle = _read_record(results_dir, ORACLE_TASK, "all_experts")
  records = [oracle] + [_read_record(results_dir, t, "all_proxies") for t in TASKS[1:]]
  lines = ["Oracle (all_experts):"] + _oracle_lines(oracle)
  lines.append("\nPaired verdicts (same test examples; exact McNemar at 0.05, 95% Newcombe "
               "interval of the difference in points):")
  for record in records:
    lines += [f"- {record.task}: {report.verdict_text(c)}" for c in record.comparisons]
  lines.append("\nCost of selection:")
  lines += _cost_lines(oracle, results_dir)
  lines.append("\nDomain Adaptive Transfer (the paper's competing approach):")
  lines.append(_dat_line(_read_record(results_dir, ORACLE_TASK, "dat"), oracle))
  lines.append("\nFine-tuning modes (parameter-efficient transfer):")
  lines += modes_lines(results_dir, ORACLE_TASK)
  return "\n".join(lines)


def _dat_line(record, oracle):
  """DAT's accuracy beside kNN's pick, and its upstream fine-tuning cost against kNN selection."""
  if record.test_accuracy is None:
    return f"- {record.task}: DAT's fine-tuning diverged (no accuracy)."
  low, high = record.test_interval or (record.test_accuracy,) * 2
  dat = record.dat
  training = dat.cost["upstream_training"]
  return (f"- {record.task}: DAT {100 * record.test_accuracy:.1f}% "
          f"±{100 * (high - low) / 2:.1f} vs kNN's pick {_pct(oracle, 'knn')}; its upstream "
          f"fine-tuning ({training['steps']} steps x {training['batch_size']} images, effective "
          f"sample size {dat.weights['effective_sample_size']:.0f} of "
          f"{dat.weights['num_upstream_images']}) took {training['seconds']:.0f}s against "
          f"{dat.knn_selection['seconds']:.1f}s for kNN over {dat.knn_selection['num_experts']}"
          f" experts: {_times(dat.upstream_training_over_knn)} (paper: 500-1000x at 240 experts "
          "and DAT's full budget; python bench/cost.py projects it).")


def _times(ratio):
  """`ratio` as "1234x", or with two significant digits below 10 ("0.56x" is cheaper)."""
  return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def _export(workdir, export_dir):
  from tfexperts.hub import collection  # pylint: disable=g-import-not-at-top
  entries = collection.export_workdir(workdir, export_dir, "demo", overwrite=True)
  print(f"Exported {len(entries)} modules to {os.path.join(export_dir, 'demo')}:")
  print(collection.format_entries(entries), flush=True)


def _evaluate(tasks, selection, experts, data_dir, results_dir, protocol_config=None):
  """bin/vtab_eval in-process (`protocol_config` None: the quick protocol with EVAL_PROTOCOL);
  the upstream data and DAT's budget serve only --selection=dat. Returns the records."""
  from tfexperts.transfer import eval_config  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import evaluate  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import protocol  # pylint: disable=g-import-not-at-top
  return evaluate.run(eval_config.EvalConfig(
      tasks=list(tasks), experts=[experts], selection=selection,
      protocol=protocol_config or protocol.ProtocolConfig.quick(resolution=64, **EVAL_PROTOCOL),
      data_dir=data_dir, results_dir=results_dir, dat=eval_config.DatConfig(**DAT_SETTINGS),
      upstream=eval_config.UpstreamSpec(UPSTREAM_DATASET, data_dir=data_dir)))


def evaluate_modes(task, experts, data_dir, results_dir, modes=MODES, **protocol_settings):
  """kNN's pick of `task` fine-tuned in each of `modes` (bin/vtab_eval --selection=knn
  --finetune=MODE --quick), each with its mode's quick grid and `protocol_settings` (default
  MODES_PROTOCOL); returns their records (written beside the full ones in `results_dir`)."""
  from tfexperts.transfer import protocol  # pylint: disable=g-import-not-at-top
  settings = protocol_settings or MODES_PROTOCOL
  return [_evaluate([task], "knn", experts, data_dir, results_dir,
                    protocol.ProtocolConfig.quick(finetune=mode, **settings))[0]
          for mode in modes]


def modes_lines(results_dir, task):
  """The modes block: kNN's pick of `task` full (from the task's records in full mode) and in
  the modes `evaluate_modes` ran, as the report's modes table (`report.modes_markdown`)."""
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  records = [r for r in report.read_records(results_dir) if r.task == task]
  knn = [r for r in records if r.selection == "knn" and r.finetune != report.FULL]
  if not knn:
    return [f"- {task}: kNN's pick was not fine-tuned in a mode other than full."]
  expert = knn[0].chosen[0]
  return [f"- {task}: kNN's pick {expert}, fine-tuned whole (full) and in "
          f"{', '.join(r.finetune for r in knn)} (each mode's quick learning rates, "
          f"{knn[0].config['steps'][0]} steps); vs full: paired on the same test examples "
          "(difference in points, 95% interval, exact McNemar p):", "",
          report.modes_markdown(records, expert=expert).rstrip()]


class _Paths:
  """Where the demo reads and writes, from its flags."""

  def __init__(self, args):
    self.workdir = os.path.abspath(args.workdir)
    self.export_dir = args.export_dir
    self.data_dir = os.path.join(self.workdir, "tfds")
    self.results_dir = os.path.join(self.workdir, "results")
    self.train_dir = os.path.join(self.workdir, "train")
    self.experts = os.path.join(args.export_dir, "demo")


def _part_datasets(paths):
  from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
  offline.prepare_offline_datasets(paths.data_dir, "demo")


def _part_train(paths, stage):
  from tfexperts.train import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfexperts.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig(workdir=paths.train_dir, data_dir=paths.data_dir,
                                  **{**TRAIN_SETTINGS, "stage": [stage]})
  _step(f"train_experts --workdir={paths.train_dir} --stage={stage} (tiny BiT)",
        lambda: workdir_lib.train(config))


def _part_modes(paths):
  _step(f"vtab_eval --task={ORACLE_TASK} --selection=knn --finetune={{{','.join(MODES)}}} "
        "--quick --steps=100", lambda: evaluate_modes(ORACLE_TASK, paths.experts,
                                                      paths.data_dir, paths.results_dir))


def _part_evaluate(paths, tasks, selection):
  _step(f"vtab_eval --task={','.join(tasks)} --selection={selection} --quick",
        lambda: _evaluate(tasks, selection, paths.experts, paths.data_dir, paths.results_dir))


# The parts that run side by side, in groups of independent parts (see main): the
# baseline beside the downstream datasets; the experts' training (each starts from the
# baseline); after the export, the evaluations (each reads only the exported modules).
PARTS = {"baseline": lambda paths: _part_train(paths, "baseline"),
         "datasets": _part_datasets,
         "full": lambda paths: _part_train(paths, "full"),
         "adapter": lambda paths: _part_train(paths, "adapter"),
         "epn": lambda paths: _part_train(paths, "epn"),
         "oracle": lambda paths: _part_evaluate(paths, [ORACLE_TASK], "all_experts"),
         **{task: (lambda paths, task=task: _part_evaluate(paths, [task], "all_proxies"))
            for task in TASKS[1:]},
         "dat": lambda paths: _part_evaluate(paths, [ORACLE_TASK], "dat"),
         "modes": _part_modes}


def _side_by_side(paths, args, parts):
  """Runs `parts` (names in PARTS) as child processes at once; returns their wall seconds."""
  from tfexperts import side_by_side  # pylint: disable=g-import-not-at-top
  print(f"\n$ side by side, one process each: {', '.join(parts)} (output lines prefixed with the "
        f"part; logs in {os.path.join(paths.workdir, 'logs')})", flush=True)
  commands = {part: [sys.executable, "-m", "tfexperts.demo", f"--workdir={args.workdir}",
                     f"--export_dir={args.export_dir}", f"--part={part}"] for part in parts}
  start = time.perf_counter()
  ended = side_by_side.run(commands, os.path.join(paths.workdir, "logs"))
  print(f"side by side: {', '.join(f'{p} ended after {s:.0f}s' for p, s in ended.items())}",
        flush=True)
  return time.perf_counter() - start


def _one_thread():
  """Makes TensorFlow run this process's ops on one thread (before it starts its runtime)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)


def main(argv=None):
  """Runs the demo stages in order and prints what each did and how long it took."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="demo_work",
                      help="datasets, training runs, results and logs go here (resumable)")
  parser.add_argument("--export_dir", default="export",
                      help="the exported hub modules go to EXPORT_DIR/demo/")
  parser.add_argument("--part", choices=sorted(PARTS),
                      help="run only this part, in this process (the demo starts its parts "
                      "this way, several at a time)")
  args = parser.parse_args(argv)
  startup_noise.filter_stderr()
  paths = _Paths(args)
  _one_thread()
  if args.part:
    PARTS[args.part](paths)
    return
  seconds = {}

  start = time.perf_counter()
  print("== 1. Offline upstream dataset", flush=True)
  from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
  offline.prepare_offline_datasets(paths.data_dir, UPSTREAM_DATASET)
  seconds["upstream dataset"] = time.perf_counter() - start
  seconds["baseline, datasets"] = _side_by_side(paths, args, ["baseline", "datasets"])
  seconds["experts"] = _side_by_side(paths, args, ["full", "adapter", "epn"])
  seconds["export"] = _step(f"export_experts --workdir={paths.train_dir} --collection=demo",
                            lambda: _export(paths.train_dir, args.export_dir))
  seconds["evaluation"] = _side_by_side(paths, args, ["oracle", *TASKS[1:], "dat", "modes"])
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  print("\n== Results (all tasks)\n" + report.summarize(paths.results_dir), flush=True)

  print("\n== Verdict", flush=True)
  print(_verdicts(paths.results_dir))
  print("\n== Time per stage: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
        + f"; total {sum(seconds.values()):.0f}s", flush=True)
  print(f"Table: {paths.results_dir}/summary.md and summary.png; modules: "
        f"{args.export_dir}/demo/")


def run():
  """Console-script entry point (`tfexperts-demo`)."""
  main()


if __name__ == "__main__":
  main()
