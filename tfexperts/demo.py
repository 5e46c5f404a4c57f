"""The offline demo behind `make demo`: the whole pipeline on built-in data, on a CPU.

1. builds the offline tfds datasets (upstream shapes hierarchy + downstream tasks) in WORKDIR/tfds;
2. bin/train_experts: a small BiT baseline, full experts and adapter experts for the largest
   hierarchy branches, and the expert prediction network;
3. bin/export_experts: every expert as a TF-Hub module under export/demo/;
4. bin/vtab_eval --selection=all_proxies on three offline tasks: kNN, label matching, domain
   prediction and random selection pick experts, the picks and the baseline are fine-tuned with
   the (quick) VTAB-1k protocol, and the paper-style table is printed;
5. an honest verdict per task (did kNN's pick beat the baseline and random?) and the cost of
   selection against fine-tuning every expert.
Every step resumes: re-running `make demo` skips what is finished.

Usage: python -m tfexperts.demo [--workdir demo_work] [--export_dir export]
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("shapes_fine", "shapes_mixed", "shapes_count")
TRAIN_FLAGS = ["--dataset=tfexperts_shapes/demo", "--model=tiny", "--resolution=64",
               "--batch_size=64", "--baseline_steps=600", "--expert_steps=200",
               "--num_experts=4", "--base_lr=0.4", "--decay=cosine", "--warmup_steps=30",
               "--checkpoint_every=100", "--log_every=50", "--stage=baseline,full,adapter,epn"]
EVAL_FLAGS = ["--selection=all_proxies", "--quick", "--resolution=64", "--steps=100",
              "--learning_rates=0.3,0.1"]


def _binary(name, args):
  """Runs bin/NAME with `args`, streaming its output; returns seconds taken. Raises on failure."""
  start = time.perf_counter()
  command = [sys.executable, os.path.join(REPO, "bin", name), *args]
  print(f"\n$ bin/{name} {' '.join(args)}", flush=True)
  env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
  subprocess.run(command, check=True, env=env)
  return time.perf_counter() - start


def _verdicts(results_dir, tasks):
  """Per task: kNN's pick against the baseline and random selection, and the selection cost."""
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  lines = []
  for task in tasks:
    path = report.record_path(results_dir, task, "all_proxies")
    with open(path) as f:
      record = json.load(f)
    acc = record["strategy_accuracy"]
    per_expert_seconds = [r["seconds"] for r in record["per_expert"].values()]
    all_cost = record["num_experts"] * sum(per_expert_seconds) / len(per_expert_seconds)
    knn, base, rand = acc.get("knn"), acc.get("baseline"), acc.get("random")
    verdict = ("beat" if knn > base else "tied" if knn == base else "lost to")
    lines.append(
        f"- {task}: kNN picked {record['picks'].get('knn')} ({100 * knn:.1f}%), which {verdict} "
        f"the baseline ({100 * base:.1f}%) and "
        f"{'beat' if knn > rand else 'tied' if knn == rand else 'lost to'} random selection "
        f"({record['picks'].get('random')}, {100 * rand:.1f}%). Selection took "
        f"{record['times']['selection_seconds']:.0f}s for {record['num_experts']} experts; "
        f"fine-tuning one expert took {sum(per_expert_seconds) / len(per_expert_seconds):.0f}s, "
        f"so fine-tuning every expert would take about {all_cost:.0f}s "
        f"({all_cost / max(record['times']['selection_seconds'], 1e-9):.0f}x the selection).")
  return "\n".join(lines)


def main(argv=None):
  """Runs the demo stages in order and prints what each did and how long it took."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="demo_work")
  parser.add_argument("--export_dir", default="export")
  args = parser.parse_args(argv)
  workdir = os.path.abspath(args.workdir)
  data_dir = os.path.join(workdir, "tfds")
  results_dir = os.path.join(workdir, "results")
  seconds = {}

  start = time.perf_counter()
  print("== 1. Offline datasets", flush=True)
  from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
  offline.prepare_offline_datasets(data_dir, "demo")
  seconds["datasets"] = time.perf_counter() - start
  seconds["train"] = _binary("train_experts", [f"--workdir={workdir}/train",
                                               f"--data_dir={data_dir}", *TRAIN_FLAGS])
  seconds["export"] = _binary("export_experts", [f"--workdir={workdir}/train", "--collection=demo",
                                                 f"--export_dir={args.export_dir}", "--overwrite"])
  seconds["vtab_eval"] = _binary("vtab_eval", [
      f"--task={','.join(TASKS)}", f"--experts={os.path.join(args.export_dir, 'demo')}",
      f"--data_dir={data_dir}", f"--results_dir={results_dir}", *EVAL_FLAGS])

  print("\n== Verdict", flush=True)
  print(_verdicts(results_dir, TASKS))
  print("\n== Time per stage: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
        + f"; total {sum(seconds.values()):.0f}s", flush=True)
  print(f"Table: {results_dir}/summary.md and summary.png; modules: {args.export_dir}/demo/")


def run():
  """Console-script entry point."""
  main()


if __name__ == "__main__":
  main()
