"""bin/train_experts: baseline and expert training on TPUStrategy, MirroredStrategy or multi-worker.

Usage: bin/train_experts --workdir=DIR [--stage=baseline,full,adapter,patch,epn] [flags]

  bin/train_experts --workdir=runs/shapes --stage=baseline,full,adapter,patch,epn \\
      --dataset=tfexperts_shapes/demo --model=tiny --resolution=64 --batch_size=64
  bin/train_experts --tpu=my-tpu --workdir=gs://bucket/runs/in21k --dataset=imagenet21k \\
      --hierarchy=gs://bucket/in21k_hierarchy.tsv --label_key=labels --num_experts=50 --model=r50x1

Stages (run in the order given; each resumes from its checkpoints and skips finished models):
  baseline  stage 1, the BiT baseline on the whole upstream dataset
  full      each expert = the baseline fine-tuned on its slice
  adapter   frozen baseline + one residual adapter per expert, each trained on its slice
  patch     frozen baseline + one GroupNorm patch per expert
  epn       expert prediction network (multi-label over the expert domains)
"""
import json
import os
import sys

from absl import flags

from tfexperts import errors
from tfexperts.cli import checks
from tfexperts.cli import run as run_lib
from tfexperts.models import presets
from tfexperts.train import strategy as strategy_lib

FLAGS = flags.FLAGS
MIXED_PRECISION = ("none", "auto", "bfloat16", "float16")
SLICES = ("semantic", "random")
STAGES = ("baseline", "full", "adapter", "patch", "epn")

flags.DEFINE_string("workdir", None, "Where checkpoints, summaries and finished models go.")
flags.DEFINE_list("stage", ["baseline"], f"Stages to run, in order: {', '.join(STAGES)}.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (`local` on a TPU VM).")
flags.DEFINE_float("tpu_timeout", 30.0, "Seconds to wait for the TPU to accept the connection "
                   "before failing with its address.")
flags.DEFINE_enum("strategy", "auto", strategy_lib.STRATEGIES,
                  "Distribution strategy without --tpu (auto: MirroredStrategy over GPUs, else one "
                  "device; multi_worker reads TF_CONFIG).")
flags.DEFINE_string("dataset", "tfexperts_shapes/demo", "tfds name[/config][:version] of the "
                    "upstream dataset.")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: tfds's own).")
flags.DEFINE_string("split", "train", "Upstream split.")
flags.DEFINE_string("hierarchy", None, "Label hierarchy file (JSON or TSV); default: the offline "
                    "dataset's shipped hierarchy.")
flags.DEFINE_string("image_key", "image", "Image feature key.")
flags.DEFINE_string("label_key", "label", "Label feature key (ClassLabel, Sequence(ClassLabel) or "
                    "multi-hot).")
flags.DEFINE_bool("prepare_offline", True, "Build the offline tfexperts_* dataset into --data_dir "
                  "when it is missing.")
flags.DEFINE_list("experts", [], "Explicit expert domains (hierarchy node names); default: the "
                  "--num_experts largest nodes.")
flags.DEFINE_integer("num_experts", 5, "How many domains to choose automatically (top by count).",
                     lower_bound=1)
flags.DEFINE_integer("min_count", 1, "Minimum images for a node to become an expert domain.",
                     lower_bound=1)
flags.DEFINE_enum("slices", "semantic", SLICES, "Expert data: the domains' images, or random "
                  "subsets of the same sizes (control).")
flags.DEFINE_string("model", "r50x1", f"Model preset: {', '.join(presets.PRESETS)}.")
flags.DEFINE_float("width", None, "Override the preset's width multiplier.")
flags.DEFINE_integer("groups", None, "Override the GroupNorm group count.", lower_bound=1)
flags.DEFINE_integer("resolution", 64, "Training resolution (images are resized to it).",
                     lower_bound=1)
flags.DEFINE_string("preprocess", "resize({res})|flip_lr|value_range(0, 1)", "Training "
                    "preprocessing after decode; {res} is replaced by --resolution.")
flags.DEFINE_integer("batch_size", 512, "Global batch size (split across replicas).", lower_bound=1)
flags.DEFINE_integer("baseline_steps", 1000, "Steps of stage 1.", lower_bound=1)
flags.DEFINE_integer("expert_steps", 500, "Steps of every expert (and of the EPN), whatever its "
                     "slice size.", lower_bound=1)
flags.DEFINE_float("base_lr", 0.003, "Learning rate at batch 512 (scaled linearly with batch).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0)
flags.DEFINE_integer("warmup_steps", 50, "Linear warm-up steps.", lower_bound=0)
flags.DEFINE_enum("decay", "step", ["step", "cosine"], "Decay after warm-up (step: x0.1 at 30%, "
                  "60%, 90%).")
flags.DEFINE_float("weight_decay", 0.0, "L2 weight decay on kernels.", lower_bound=0.0)
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing (single-label data).", lower_bound=0.0)
flags.DEFINE_float("mixup_alpha", 0.0, "Mixup Beta(alpha, alpha); 0 turns it off.", lower_bound=0.0)
flags.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "Compute dtype: auto = bfloat16 on "
                  "TPU, float16 on GPU, float32 on CPU.")
flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints.", lower_bound=1)
flags.DEFINE_integer("log_every", 10, "Steps between progress lines.", lower_bound=1)
flags.DEFINE_integer("steps_per_loop", 1, "Steps per tf.function call (raise on TPU).",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of data order, augmentation and initialisation.")
flags.DEFINE_bool("deterministic", False, "Deterministic ops (bit-identical reruns; slower).")
checks.must_be_positive("width", "base_lr")


def _policy(mixed_precision, tpu):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if mixed_precision == "auto":
    if tpu:
      return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else None
  return {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[mixed_precision]


def _check_run_config(workdir, is_chief):
  """Records this binary's flags (config.json, flags.txt) on a first run; on a later run refuses
  flags that change the meaning of what is in `workdir` (see `tfexperts.train.settings`)."""
  from tfexperts.train import settings  # pylint: disable=g-import-not-at-top
  own = [f for f in FLAGS.flags_by_module_dict()[__name__] if f.value is not None]
  settings.check_and_record(workdir, {f.name: f.value for f in own},
                            [f.serialize() for f in own], write=is_chief)


def _upstream(data_dir):
  """The upstream dataset; the hierarchy and --experts are checked before any data is built."""
  from tfexperts.data import builders  # pylint: disable=g-import-not-at-top,unused-import
  from tfexperts.data import hierarchy as hierarchy_lib  # pylint: disable=g-import-not-at-top
  from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
  from tfexperts.data import upstream as upstream_lib  # pylint: disable=g-import-not-at-top
  offline_name = FLAGS.dataset.split("/")[0].split(":")[0] in builders.NAMES
  if FLAGS.hierarchy is None and not offline_name:
    raise errors.UserError(f"--hierarchy is required for dataset {FLAGS.dataset!r} (only the "
                           "offline tfexperts_* datasets ship one).")
  hierarchy = hierarchy_lib.load_hierarchy(FLAGS.hierarchy or offline.upstream_hierarchy_path())
  unknown = [e for e in FLAGS.experts if e not in hierarchy]
  if unknown:
    raise errors.UserError(f"--experts names unknown hierarchy nodes {unknown}. Known nodes: "
                           f"{list(hierarchy.nodes)[:50]}")
  if offline_name and FLAGS.prepare_offline:
    offline.prepare_offline_datasets(data_dir, configs=(FLAGS.dataset.split(":")[0],))
  return upstream_lib.Upstream(FLAGS.dataset, hierarchy, split=FLAGS.split, data_dir=data_dir,
                               image_key=FLAGS.image_key, label_key=FLAGS.label_key)


def _domains(upstream, workdir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfexperts.data import upstream as upstream_lib  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "domains.json")
  if tf.io.gfile.exists(path):  # a resumed run keeps the expert indices its checkpoints use
    domains, _ = upstream_lib.load_domains(path)
    print(f"Expert domains (recorded in {path}):\n"
          + upstream_lib.format_domains(domains, upstream.num_images))
    return domains
  counts = upstream.count_nodes()
  if FLAGS.experts:
    domains = [upstream_lib.Domain(i, name, counts[name]) for i, name in enumerate(FLAGS.experts)]
    print("Expert domains (explicit):\n" + upstream_lib.format_domains(domains,
                                                                       upstream.num_images))
    upstream_lib.save_domains(path, domains, dataset=upstream.name, split=upstream.split,
                              num_images=upstream.num_images, explicit=True)
    return domains
  return upstream_lib.select_expert_domains(upstream, top_k=FLAGS.num_experts,
                                            min_count=FLAGS.min_count, output_path=path)


def check_flags(argv):
  """Checks every flag that needs nothing loaded; raises UserError naming a bad value."""
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {argv[1:]}")
  checks.required("workdir", FLAGS.workdir, " (checkpoints and finished models go there)")
  checks.known_names("stage", FLAGS.stage, STAGES)
  checks.known_names("model", FLAGS.model, list(presets.PRESETS))
  checks.existing_path("hierarchy", FLAGS.hierarchy)


def main(argv):
  """Runs the stages named by --stage with the flags' settings."""
  check_flags(argv)
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfexperts.train import loop  # pylint: disable=g-import-not-at-top
  from tfexperts.train import stages  # pylint: disable=g-import-not-at-top

  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy_lib.make_strategy(FLAGS.tpu, FLAGS.strategy, FLAGS.tpu_timeout)
  policy = _policy(FLAGS.mixed_precision, FLAGS.tpu)
  if policy:
    keras.mixed_precision.set_global_policy(policy)
  tf.io.gfile.makedirs(FLAGS.workdir)
  _check_run_config(FLAGS.workdir, strategy_lib.is_chief(strategy))
  upstream = _upstream(FLAGS.data_dir)
  domains = _domains(upstream, FLAGS.workdir)
  overrides = {k: v for k, v in (("width", FLAGS.width), ("groups", FLAGS.groups))
               if v is not None}
  common = dict(global_batch_size=FLAGS.batch_size, base_lr=FLAGS.base_lr,
                momentum=FLAGS.momentum, warmup_steps=FLAGS.warmup_steps, decay=FLAGS.decay,
                weight_decay=FLAGS.weight_decay, label_smoothing=FLAGS.label_smoothing,
                mixup_alpha=FLAGS.mixup_alpha, multi_label=upstream.spec.kind != "single",
                checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every,
                steps_per_loop=FLAGS.steps_per_loop, seed=FLAGS.seed,
                loss_scaling=policy == "mixed_float16")
  sc = stages.StageContext(
      workdir=FLAGS.workdir, strategy=strategy, upstream=upstream, domains=domains,
      preset=FLAGS.model, model_overrides=overrides,
      preprocess=FLAGS.preprocess.format(res=FLAGS.resolution), resolution=FLAGS.resolution,
      baseline_config=loop.LoopConfig(total_steps=FLAGS.baseline_steps, **common),
      expert_config=loop.LoopConfig(total_steps=FLAGS.expert_steps, **common),
      slices=FLAGS.slices, seed=FLAGS.seed)
  priors = None
  for stage in FLAGS.stage:
    if stage in ("full", "adapter", "patch") and priors is None:
      priors = stages.label_priors(upstream, domains)
    if stage == "baseline":
      stages.run_baseline(sc)
    elif stage == "full":
      stages.run_full(sc, priors)
    elif stage == "adapter":
      stages.run_adapter(sc, priors)
    elif stage == "patch":
      stages.run_patch(sc, priors)
    else:
      stages.run_epn(sc)
  print(f"\nDone: stages {FLAGS.stage} in {FLAGS.workdir}", flush=True)
  print(json.dumps({"workdir": FLAGS.workdir, "stages": FLAGS.stage,
                    "experts": [d.name for d in domains]}), flush=True)


def run():
  """Console-script entry point (`train_experts`)."""
  run_lib.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
