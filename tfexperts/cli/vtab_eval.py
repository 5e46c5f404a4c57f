"""bin/vtab_eval: select an expert for a task, fine-tune it with the VTAB-1k protocol, report.

Usage: bin/vtab_eval --task=TASK[,...] --experts=COLLECTION_DIR_OR_HANDLE[,...] [flags]
       bin/vtab_eval --summary [--results_dir=DIR]

  bin/vtab_eval --task=shapes_fine,digits --experts=export/shapes --selection=knn --quick
  bin/vtab_eval --task=vtab --experts=export/in21k --selection=all_experts --tpu=my-tpu
  bin/vtab_eval --summary --results_dir=results        # the paper-style table of a results dir

--selection: knn | label_matching | domain | random (a proxy picks one expert), knn_topk (kNN ranks,
the top --topk get short fine-tunes, the best on val200 gets the full protocol), dat (Domain
Adaptive Transfer: the baseline fine-tuned on upstream data reweighted for the task, then the
protocol; needs --upstream_dataset; records its cost against kNN selection), all_experts (every
expert is fine-tuned: the oracle, with each strategy's accuracy, regret and Kendall's tau),
all_proxies (only the baseline and the experts some --report_proxies picks: every strategy's row of
the table at a fraction of the oracle's cost), or the name of one expert (e.g. baseline). Each task
writes a JSON record and a row of results.csv. Every test accuracy carries its 95% Wilson
interval; multi-expert records add paired verdicts (exact McNemar, Newcombe interval). Each expert
is embedded and fine-tuned at its own resolution (its metadata's input.resolution, else 224)
unless --resolution sets one for all.
"""
import dataclasses
import json
import os
import platform
import sys
import time

from absl import flags

from tfexperts import errors
from tfexperts.cli import checks
from tfexperts.cli import run as run_lib
from tfexperts.data import tasks
from tfexperts.select import proxies as proxies_lib
from tfexperts.train import strategy as strategy_lib

FLAGS = flags.FLAGS
SELECTIONS = ("knn", "label_matching", "domain", "random", "knn_topk", "dat", "all_experts",
              "all_proxies")
FINE_TUNE_SEVERAL = ("all_experts", "all_proxies")
TOPK = "knn_topk"  # a strategy, not a scoring proxy: it fine-tunes

flags.DEFINE_list("task", [], "Task names (tfexperts.data.tasks), `vtab` for all 19, and/or "
                  "task strings tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY], folder:PATH.")
flags.DEFINE_list("experts", [], "Collection directories, hub handles (a handle may end in "
                  "?range=-1:1) and/or published collections (tfhub:NAME).")
flags.DEFINE_string("selection", "knn", f"One of {', '.join(SELECTIONS)}, or an expert's name.")
flags.DEFINE_list("report_proxies", ["knn", "label_matching", "domain", "random", TOPK],
                  "Proxies scored (and recorded) for every task; knn_topk (short fine-tunes) is "
                  "reported by all_experts / all_proxies when listed.")
flags.DEFINE_integer("topk", 3, "knn_topk: number of kNN-ranked experts given a short fine-tune.",
                     lower_bound=1)
flags.DEFINE_float("topk_steps_fraction", 0.25,
                   "knn_topk: short-run steps as a fraction of the shortest sweep step count.")
flags.DEFINE_float("topk_learning_rate", None,
                   "knn_topk: the short runs' learning rate at batch 512 (default: the sweep's "
                   "first).")
flags.DEFINE_string("upstream_dataset", None, "dat: tfds name[/config][:version] of the "
                    "baseline's upstream data (as bin/train_experts --dataset).")
flags.DEFINE_string("upstream_data_dir", None, "dat: its tfds data dir (default: --data_dir).")
flags.DEFINE_string("upstream_split", "train", "dat: upstream split.")
flags.DEFINE_string("upstream_hierarchy", None, "dat: its hierarchy file (default: the offline "
                    "dataset's shipped one).")
flags.DEFINE_string("upstream_image_key", "image", "dat: upstream image feature key.")
flags.DEFINE_string("upstream_label_key", "label", "dat: upstream label feature key.")
flags.DEFINE_integer("dat_steps", 1000, "dat: upstream fine-tuning steps.")
flags.DEFINE_integer("dat_batch_size", 512, "dat: upstream fine-tuning global batch size.")
flags.DEFINE_float("dat_lr", 0.003, "dat: upstream learning rate at batch 512.")
flags.DEFINE_integer("dat_resolution", None, "dat: upstream training resolution (default: the "
                     "baseline module's).")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: tfds's own).")
flags.DEFINE_string("results_dir", "results", "Records, results.csv, summary.md/png.")
flags.DEFINE_string("workdir", None, "Fine-tuning checkpoints (default: RESULTS_DIR/runs).")
flags.DEFINE_string("cache_dir", None, "Feature cache (default: RESULTS_DIR/features).")
flags.DEFINE_bool("quick", False, "CPU preset: batch 32, 150 steps, lr {0.1, 0.03}, one retrain.")
flags.DEFINE_list("learning_rates", None, "Sweep learning rates at batch 512 (default 0.01,0.001).")
flags.DEFINE_list("steps", None, "Sweep step counts (default 2500,10000).")
flags.DEFINE_integer("batch_size", None, "Fine-tuning batch size (default 512).", lower_bound=1)
flags.DEFINE_integer("resolution", None, "Image size for every expert, embedding and fine-tuning "
                     "(default: each expert's metadata input.resolution, else 224).",
                     lower_bound=1)
flags.DEFINE_integer("sweep_repeats", None, "Seeds per sweep point (default 1).", lower_bound=1)
flags.DEFINE_integer("final_repeats", None, "Retrains on train800val200; median reported (3).",
                     lower_bound=1)
flags.DEFINE_enum("decay", None, ["step", "cosine"], "Learning-rate decay.")
flags.DEFINE_float("mixup_alpha", None, "Mixup alpha (0: off).", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Base seed (fine-tuning runs use seed + repeat).")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (`local` on a TPU VM).")
flags.DEFINE_float("tpu_timeout", 30.0, "Seconds to wait for the TPU to accept the connection.")
flags.DEFINE_enum("strategy", "auto", strategy_lib.STRATEGIES,
                  "Distribution strategy without --tpu.")
flags.DEFINE_bool("summary", False, "Only summarize --results_dir into summary.md/png.")


def _protocol_config():
  from tfexperts.transfer import protocol  # pylint: disable=g-import-not-at-top
  overrides = {}
  if FLAGS.learning_rates:
    overrides["learning_rates"] = tuple(checks.numbers("learning_rates", FLAGS.learning_rates,
                                                       float))
  if FLAGS.steps:
    overrides["steps"] = tuple(checks.numbers("steps", FLAGS.steps, int))
  for name in ("batch_size", "resolution", "sweep_repeats", "final_repeats", "decay",
               "mixup_alpha"):
    if getattr(FLAGS, name) is not None:
      overrides[name] = getattr(FLAGS, name)
  overrides["seed"] = FLAGS.seed
  return protocol.ProtocolConfig.quick(**overrides) if FLAGS.quick else (
      protocol.ProtocolConfig(**overrides))


def task_names():
  """The task names --task asks for (`vtab`: the 19 VTAB-1k tasks)."""
  return list(tasks.VTAB_TASKS) if FLAGS.task == ["vtab"] else FLAGS.task


def check_flags(argv):
  """Checks every flag that needs nothing loaded; raises UserError naming a bad value."""
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.summary:
    checks.existing_path("results_dir", FLAGS.results_dir)
    return
  checks.required("task", FLAGS.task, " (or --summary)")
  checks.required("experts", FLAGS.experts, " (collection directories and/or hub handles)")
  for name in task_names():
    tasks.get_task(name, FLAGS.data_dir)
  checks.known_names("report_proxies", FLAGS.report_proxies,
                     sorted(proxies_lib.PROXIES) + [TOPK])
  if not 0.0 < FLAGS.topk_steps_fraction <= 1.0:
    raise errors.UserError(f"--topk_steps_fraction: {FLAGS.topk_steps_fraction!r} must be in "
                           "(0, 1].")
  checks.numbers("learning_rates", FLAGS.learning_rates or [], float)
  checks.numbers("steps", FLAGS.steps or [], int)
  modules = checks.hub_handles("experts", FLAGS.experts)
  if FLAGS.selection not in SELECTIONS and modules is not None and (
      FLAGS.selection not in modules):
    raise errors.UserError(f"--selection: {FLAGS.selection!r} is neither one of "
                           f"{', '.join(SELECTIONS)} nor a module of the collection "
                           f"({', '.join(modules)}).")
  checks.existing_path("data_dir", FLAGS.data_dir)
  if FLAGS.selection == "dat":
    if not FLAGS.upstream_dataset:
      raise errors.UserError("--selection=dat fine-tunes the baseline on its upstream data: name "
                             "it with --upstream_dataset (and --upstream_hierarchy, "
                             "--upstream_data_dir as for bin/train_experts).")
    checks.existing_path("upstream_hierarchy", FLAGS.upstream_hierarchy)
    checks.existing_path("upstream_data_dir", FLAGS.upstream_data_dir)
    for name in ("dat_steps", "dat_batch_size"):
      if FLAGS[name].value <= 0:
        raise errors.UserError(f"--{name} must be a positive integer. Received: "
                               f"{FLAGS[name].value}")
    if not FLAGS.dat_lr > 0:
      raise errors.UserError(f"--dat_lr must be > 0. Received: {FLAGS.dat_lr}")


def _versions():
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return {"tfexperts": metadata.version("tfexperts"), "tensorflow": tf.__version__,
          "keras": keras.__version__, "tensorflow_datasets": tfds.__version__,
          "tensorflow_hub": hub.__version__, "python": platform.python_version()}


def _topk(task, by_name, knn_scores, config, strategy, dirs):
  from tfexperts.transfer import topk  # pylint: disable=g-import-not-at-top
  return topk.select({n: e.handle for n, e in by_name.items()}, knn_scores, task, config,
                     os.path.join(dirs["work"], task.name), strategy, k=FLAGS.topk,
                     steps_fraction=FLAGS.topk_steps_fraction,
                     learning_rate=FLAGS.topk_learning_rate, data_dir=FLAGS.data_dir)


def _oracle_regret(dirs, task, config_dict, accuracy):
  """Regret against an all_experts record of the same task and protocol, if one exists."""
  from tfexperts import fileio  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = report.record_path(dirs["results"], task.name, "all_experts")
  if not tf.io.gfile.exists(path):
    return None
  oracle = fileio.read_json(path)
  if oracle.get("config") != config_dict or "oracle" not in oracle.get("strategy_accuracy", {}):
    return None
  return oracle["strategy_accuracy"]["oracle"] - accuracy


def _dat_config():
  from tfexperts.transfer import dat  # pylint: disable=g-import-not-at-top
  return dat.DatConfig(steps=FLAGS.dat_steps, batch_size=FLAGS.dat_batch_size,
                       base_lr=FLAGS.dat_lr, resolution=FLAGS.dat_resolution,
                       checkpoint_every=max(min(100, FLAGS.dat_steps // 4), 1),
                       log_every=max(min(10, FLAGS.dat_steps // 10), 1), seed=FLAGS.seed)


def _upstream_for_dat():
  from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
  return offline.open_upstream(FLAGS.upstream_dataset, FLAGS.upstream_hierarchy,
                               FLAGS.upstream_data_dir or FLAGS.data_dir,
                               split=FLAGS.upstream_split, image_key=FLAGS.upstream_image_key,
                               label_key=FLAGS.upstream_label_key)


def evaluate_dat(task, candidates, upstream, config, strategy, dirs):
  """--selection=dat: Domain Adaptive Transfer for one task, with kNN selection's cost beside it.

  Returns the record (also written): the DAT model's protocol result, its weights summary, the
  cost of each DAT step, and the ratio of DAT's upstream fine-tuning to kNN selection over the
  pool, both measured in this run (kNN embeds with the feature cache off, so it is timed whole).
  """
  from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import dat  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  source = selection.FeatureSource(task, "train800", FLAGS.data_dir, config.resolution)
  scores, _ = selection.score(candidates, source, ["knn"])
  knn_seconds = time.perf_counter() - start
  result = dat.run(task, candidates.baseline, upstream, _dat_config(), config,
                   os.path.join(dirs["work"], task.name, "dat"), strategy, FLAGS.data_dir,
                   dirs["cache"])
  name = f"dat_{task.name}"
  protocol_result = result["protocol"]
  cost = result["cost"]
  ratio = cost["upstream_training"]["seconds"] / knn_seconds
  print(f"   dat: test accuracy {result['test_accuracy']:.4f}; upstream fine-tuning "
        f"{cost['upstream_training']['seconds']:.1f}s vs kNN selection over "
        f"{len(candidates.experts)} experts {knn_seconds:.1f}s (x{ratio:.1f})", flush=True)
  config_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()}
  record = {"task": task.name, "task_spec": task.spec or task.name,
            "splits": task.describe_splits(FLAGS.data_dir), "group": task.group,
            "selection": "dat", "chosen": [name],
            "proxy_scores": scores, "picks": {"knn": selection.best(scores["knn"])},
            "per_expert": {name: protocol_result}, "test_accuracy": result["test_accuracy"],
            "test_interval": protocol_result.get("test_interval"),
            "test_size": protocol_result.get("test_size"), "config": config_dict,
            "dat": {"handle": result["handle"], "weights": result["weights"], "cost": cost,
                    "config": dataclasses.asdict(_dat_config()),
                    "knn_selection": {"seconds": knn_seconds, "num_experts": len(
                        candidates.experts), "images_embedded": source.stats.images_embedded},
                    "upstream_training_over_knn": ratio},
            "times": {"selection_seconds": cost["label_distribution"]["seconds"]
                      + cost["upstream_training"]["seconds"],
                      "finetune_seconds": protocol_result["seconds"]},
            "images_embedded": source.stats.images_embedded, "versions": _versions(),
            "num_experts": len(candidates.experts)}
  report.write_record(dirs["results"], record)
  return record


def evaluate_task(task, candidates, selection_name, config, strategy, dirs):
  """Selects, fine-tunes and reports one task; returns the record (also written to disk)."""
  from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import protocol  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  by_name = {selection.expert_key(e): e for e in candidates.experts}
  start = time.perf_counter()
  source = selection.FeatureSource(task, "train800", FLAGS.data_dir, config.resolution,
                                   cache_dir=dirs["cache"], strategy=strategy)
  print(f"\n== {task.name}: {source.describe_resolution(candidates.experts)}", flush=True)
  want_topk = selection_name == TOPK or (selection_name in FINE_TUNE_SEVERAL
                                         and TOPK in FLAGS.report_proxies)
  scoring = [p for p in FLAGS.report_proxies if p != TOPK]
  if want_topk and "knn" not in scoring:
    scoring.append("knn")
  scores, proxy_seconds = selection.score(candidates, source, scoring, seed=FLAGS.seed)
  picks = {proxy: selection.best(values) for proxy, values in scores.items()}
  selection_seconds = time.perf_counter() - start
  topk_block = None
  if want_topk:
    topk_block = _topk(task, by_name, scores["knn"], config, strategy, dirs)
    picks[TOPK] = topk_block["pick"]
    topk_block["cost"] = {
        "seconds": proxy_seconds["features"] + proxy_seconds["knn"] + topk_block["seconds"],
        # kNN embeds train800 once per expert (cached features cost nothing in this run).
        "images": len(by_name) * source.features(candidates.experts[0]).labels.size
                  + topk_block["images"]}
    if selection_name == TOPK:
      selection_seconds += topk_block["seconds"]
  baseline = next((n for n, e in by_name.items() if e.kind == "baseline"), None)
  if selection_name == "all_experts":
    chosen = list(by_name)
  elif selection_name == "all_proxies":
    chosen = [n for n in by_name if n == baseline or n in picks.values()]
  elif selection_name in SELECTIONS:
    if picks.get(selection_name) is None:
      raise errors.UserError(f"--selection={selection_name} could not score any expert on "
                           f"{task.name} (does the collection have what it needs?).")
    chosen = [picks[selection_name]]
  else:
    chosen = [selection_name]
  splits = task.describe_splits(FLAGS.data_dir)
  print(f"\n== {task.name}: selection={selection_name} -> fine-tuning {chosen} "
        f"(selection took {selection_seconds:.1f}s); splits {splits}", flush=True)
  per_expert = {}
  for name in chosen:
    per_expert[name] = protocol.run_protocol(
        by_name[name].handle, task, config, os.path.join(dirs["work"], task.name, name),
        strategy, FLAGS.data_dir)
    print(f"   {name}: test accuracy {per_expert[name]['test_accuracy']:.4f} "
          f"(best {per_expert[name]['best']})", flush=True)
  accuracies = {name: r["test_accuracy"] for name, r in per_expert.items()}
  best_name = max(accuracies, key=accuracies.get) if selection_name in FINE_TUNE_SEVERAL else (
      chosen[0])
  config_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()}
  record = {"task": task.name, "task_spec": task.spec or task.name, "splits": splits,
            "group": task.group, "selection": selection_name,
            "chosen": chosen, "proxy_scores": scores, "picks": picks,
            "proxy_seconds": proxy_seconds, "per_expert": per_expert,
            "test_accuracy": accuracies[best_name],
            "test_interval": per_expert[best_name].get("test_interval"),
            "test_size": per_expert[best_name].get("test_size"),
            "config": config_dict,
            "times": {"selection_seconds": selection_seconds,
                      "finetune_seconds": sum(r["seconds"] for r in per_expert.values())},
            "images_embedded": source.stats.images_embedded, "versions": _versions()}
  record["num_experts"] = len(by_name)
  record["resolution"] = {name: source.resolution_of(e) for name, e in by_name.items()}
  if topk_block is not None:
    record["topk"] = topk_block
    record["times"]["topk_seconds"] = topk_block["seconds"]
  if selection_name == TOPK:
    regret = _oracle_regret(dirs, task, config_dict, record["test_accuracy"])
    if regret is not None:
      record["regret"] = {TOPK: regret}
  if selection_name in FINE_TUNE_SEVERAL:
    strategy_picks = {p: e for p, e in picks.items() if e in accuracies}
    if baseline in accuracies:
      strategy_picks["baseline"] = baseline
    strategy_accuracy = {p: accuracies.get(picks[p]) for p in picks}
    if baseline in accuracies:
      strategy_accuracy["baseline"] = accuracies[baseline]
    if selection_name == "all_experts":
      strategy_picks["oracle"] = best_name
      strategy_accuracy["oracle"] = accuracies[best_name]
      record["regret"] = {p: strategy_accuracy["oracle"] - a
                          for p, a in strategy_accuracy.items() if a is not None}
      record["kendall_tau"] = {p: report.kendall_tau(scores[p], accuracies) for p in scores}
    record["strategy_accuracy"] = strategy_accuracy
    record["strategy_interval"] = {p: per_expert[e].get("test_interval")
                                   for p, e in strategy_picks.items()}
    record["comparisons"] = report.paired_comparisons(per_expert, strategy_picks)
  report.write_record(dirs["results"], record)
  return record


def main(argv):
  """Runs vtab_eval for every --task (or only the summary)."""
  check_flags(argv)
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  if FLAGS.summary:
    print(report.summarize(FLAGS.results_dir))
    return
  from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
  task_list = [tasks.get_task(n, FLAGS.data_dir) for n in task_names()]
  candidates = selection.load_candidates(FLAGS.experts)
  if FLAGS.selection not in SELECTIONS and FLAGS.selection not in candidates.names():
    raise errors.UserError(f"--selection: {FLAGS.selection!r} is neither one of "
                           f"{', '.join(SELECTIONS)} nor an expert of the pool "
                           f"({', '.join(candidates.names())}).")
  config = _protocol_config()
  strategy = strategy_lib.make_strategy(FLAGS.tpu, FLAGS.strategy, FLAGS.tpu_timeout)
  dirs = {"results": FLAGS.results_dir,
          "work": FLAGS.workdir or os.path.join(FLAGS.results_dir, "runs"),
          "cache": FLAGS.cache_dir or os.path.join(FLAGS.results_dir, "features")}
  upstream = _upstream_for_dat() if FLAGS.selection == "dat" else None
  for task in task_list:
    if upstream is not None:
      record = evaluate_dat(task, candidates, upstream, config, strategy, dirs)
    else:
      record = evaluate_task(task, candidates, FLAGS.selection, config, strategy, dirs)
    print(json.dumps({"task": task.name, "selection": FLAGS.selection, "chosen": record["chosen"],
                      "test_accuracy": record["test_accuracy"]}), flush=True)
  print(report.summarize(FLAGS.results_dir))


def run():
  """Console-script entry point (`vtab_eval`)."""
  run_lib.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
