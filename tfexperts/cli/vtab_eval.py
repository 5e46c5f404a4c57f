"""bin/vtab_eval: select an expert for a task, fine-tune it with the VTAB-1k protocol, report.

Usage: bin/vtab_eval --task=TASK[,...] --experts=COLLECTION_DIR_OR_HANDLE[,...] [flags]
       bin/vtab_eval --summary [--results_dir=DIR]

  bin/vtab_eval --task=shapes_fine,digits --experts=export/shapes --selection=knn --quick
  bin/vtab_eval --task=vtab --experts=export/in21k --selection=all_experts --tpu=my-tpu
  bin/vtab_eval --summary --results_dir=results        # the paper-style table of a results dir
  bin/vtab_eval --task=shapes_fine --experts=export/shapes --selection=knn --finetune=patch --quick

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
unless --resolution sets one for all. One run at a time writes a results dir (and --workdir): a
second is refused naming the first (--force_takeover); the feature cache may be shared.

--finetune: full (every weight, the default) | patch (every GroupNorm's scale and bias) | adapter
(a fresh zero-initialised residual adapter per block) | head (logits only); the last three train
the head too and keep the expert frozen. Each mode has its own learning-rate sweep (full
0.01,0.001 at batch 512; the others 0.1,0.01; --quick: 0.1,0.03 and 1,0.3); --learning_rates
overrides it. patch and adapter need tfexperts' own modules (third-party ones: head or full). A
non-full run stores only what it trained, a per-task artifact in its run directory
(RUNS/<task>/<expert>/<run>/artifact); bin/export_experts --artifact turns one into a hub module.

--multitask (with --finetune=patch and two or more tasks): one patch and head per task trained
together on one frozen expert (--selection names it, or --experts is one module), batches mixing
the tasks routed per example by task id (batch_size examples of each task per step), in the same
protocol (the sweep point with the best mean val accuracy over the tasks); each task's single-task
patch run is run too (or read from RUNS when present) and each task's accuracy is shown beside it,
with its Wilson interval. Each task gets two records: its single-task patch run (finetune patch)
and its multi-task one (finetune patch_multitask, paired against the patch run in the summary's
modes table). Also writes RESULTS_DIR/multitask_<tasks>_patch.json (the joint sweep) and one
artifact per task (RUNS/multitask_<tasks>/<expert>/<run>/artifact/<task>).
"""
import sys

from absl import flags

from tfexperts import defaults
from tfexperts import errors
from tfexperts import precision as precision_lib
from tfexperts.cli import checks
from tfexperts.cli import run as run_lib
from tfexperts.hub import openvino_engine
from tfexperts.train import strategy as strategy_lib
from tfexperts.transfer import dat_config
from tfexperts.transfer import eval_config as eval_config_lib
from tfexperts.transfer import protocol

FLAGS = flags.FLAGS
SELECTIONS = defaults.SELECTIONS

flags.DEFINE_list("task", [], "Task names (tfexperts.data.tasks), `vtab` for all 19, and/or "
                  "task strings tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY], folder:PATH.")
flags.DEFINE_list("experts", [], "Collection directories, hub handles (a handle may end in "
                  "?range=-1:1) and/or published collections (tfhub:NAME).")
flags.DEFINE_string("selection", "knn", f"One of {', '.join(SELECTIONS)}, or an expert's name.")
flags.DEFINE_list("report_proxies", list(defaults.REPORT_PROXIES),
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
flags.DEFINE_float("dat_lr", defaults.BASE_LR, "dat: upstream learning rate at batch 512.")
flags.DEFINE_integer("dat_resolution", None, "dat: upstream training resolution (default: the "
                     "baseline module's).")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: tfds's own).")
flags.DEFINE_string("results_dir", "results", "Records, results.csv, summary.md/png.")
flags.DEFINE_string("workdir", None, "Fine-tuning checkpoints (default: RESULTS_DIR/runs).")
flags.DEFINE_string("cache_dir", None, "Feature cache (default: RESULTS_DIR/features).")
flags.DEFINE_bool("quick", False, "CPU preset: batch 32, 150 steps, one retrain, lr {0.1, 0.03} "
                  "(full) or {1, 0.3} (patch, adapter, head).")
flags.DEFINE_list("learning_rates", None, "Sweep learning rates at batch 512 (default: the "
                  "--finetune mode's, 0.01,0.001 for full, 0.1,0.01 for the others).")
flags.DEFINE_enum("finetune", defaults.FINETUNE, list(defaults.FINETUNE_MODES),
                  "What trains besides the new head: full (every weight), patch (GroupNorm scales "
                  "and biases), adapter (a new residual adapter per block) or head (logits only); "
                  "non-full runs store only what they trained (a per-task artifact).")
flags.DEFINE_bool("multitask", False, "With --finetune=patch and two or more --task: train one "
                  "patch and head per task together on one expert (--selection names it), "
                  "each task beside its single-task patch run.")
flags.DEFINE_list("steps", None, "Sweep step counts (default 2500,10000).")
flags.DEFINE_integer("batch_size", None, "Fine-tuning batch size (default 512).", lower_bound=1)
flags.DEFINE_integer("resolution", None, "Image size for every expert, embedding and fine-tuning "
                     "(default: each expert's metadata input.resolution, else "
                     f"{defaults.RESOLUTION}).",
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
flags.DEFINE_string("engine", "tensorflow", "Engine embedding the pool for selection: "
                    f"{' or '.join(openvino_engine.ENGINES)} (CPU; `{openvino_engine.INSTALL_HINT}`"
                    "); fine-tuning runs in TensorFlow.")
flags.DEFINE_enum("precision", precision_lib.DEFAULT, precision_lib.PRECISIONS,
                  "Compute precision of embedding and fine-tuning (Keras mixed policies, float32 "
                  "variables, logits and GroupNorm statistics; float16 trains with loss "
                  "scaling). bfloat16 on TPUs and bfloat16-capable CPUs.")
flags.DEFINE_bool("summary", False, "Only summarize --results_dir into summary.md/png.")


def _protocol_config():
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
  overrides["finetune"] = FLAGS.finetune
  return protocol.ProtocolConfig.quick(**overrides) if FLAGS.quick else (
      protocol.ProtocolConfig(**overrides))


def check_flags(argv):
  """Checks the flags that are not an `EvalConfig` field (that checks itself); raises UserError."""
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.summary:
    checks.existing_path("results_dir", FLAGS.results_dir)
    return
  checks.required("task", FLAGS.task, " (or --summary)")
  checks.required("experts", FLAGS.experts, " (collection directories and/or hub handles)")
  openvino_engine.check_engine(FLAGS.engine)
  checks.existing_path("data_dir", FLAGS.data_dir)
  checks.existing_path("upstream_hierarchy", FLAGS.upstream_hierarchy)
  checks.existing_path("upstream_data_dir", FLAGS.upstream_data_dir)


def _dat_config():
  return dat_config.DatConfig(
      steps=FLAGS.dat_steps, batch_size=FLAGS.dat_batch_size, base_lr=FLAGS.dat_lr,
      resolution=FLAGS.dat_resolution,
      checkpoint_every=max(min(defaults.CHECKPOINT_EVERY, FLAGS.dat_steps // 4), 1),
      log_every=max(min(defaults.LOG_EVERY, FLAGS.dat_steps // 10), 1), seed=FLAGS.seed)


def eval_config():
  """The `transfer.eval_config.EvalConfig` the flags ask for (it checks itself: UserError)."""
  upstream = dat_config.UpstreamSpec(
      FLAGS.upstream_dataset, FLAGS.upstream_hierarchy, FLAGS.upstream_data_dir or FLAGS.data_dir,
      split=FLAGS.upstream_split, image_key=FLAGS.upstream_image_key,
      label_key=FLAGS.upstream_label_key) if FLAGS.upstream_dataset else None
  return eval_config_lib.EvalConfig(
      tasks=FLAGS.task, experts=FLAGS.experts, selection=FLAGS.selection,
      report_proxies=tuple(FLAGS.report_proxies), topk=FLAGS.topk,
      topk_steps_fraction=FLAGS.topk_steps_fraction, topk_learning_rate=FLAGS.topk_learning_rate,
      protocol=_protocol_config(), data_dir=FLAGS.data_dir, results_dir=FLAGS.results_dir,
      workdir=FLAGS.workdir, cache_dir=FLAGS.cache_dir, seed=FLAGS.seed, engine=FLAGS.engine,
      dat=_dat_config(), upstream=upstream, precision=FLAGS.precision,
      multitask=FLAGS.multitask)


def main(argv):
  """Runs vtab_eval for every --task (or only the summary)."""
  check_flags(argv)
  if FLAGS.summary:
    from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
    print(report.summarize(FLAGS.results_dir))
    return
  config = eval_config()  # before TensorFlow loads: a bad value fails within a second
  run_lib.take_leases(FLAGS.results_dir, FLAGS.workdir)  # the feature cache stays shared
  from tfexperts.transfer import evaluate  # pylint: disable=g-import-not-at-top
  strategy = strategy_lib.make_strategy(FLAGS.tpu, FLAGS.strategy, FLAGS.tpu_timeout)
  notice = precision_lib.device_notice(FLAGS.precision, "TPU" if FLAGS.tpu else None)
  print(f"precision: {FLAGS.precision}" + (f" (notice: {notice})" if notice else ""), flush=True)
  evaluate.run(config, strategy)


def run():
  """Console-script entry point (`vtab_eval`)."""
  run_lib.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
