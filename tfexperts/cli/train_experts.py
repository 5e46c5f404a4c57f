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

Each stage's directory (<workdir>/<stage>) has one writer: a second run of a stage that is being
trained is refused with the first run's host, pid, start and command (--force_takeover overrides);
stages may run as separate concurrent processes on one workdir.
"""
import os
import sys

from absl import flags

from tfexperts import artifacts
from tfexperts import errors
from tfexperts.cli import checks
from tfexperts.cli import run as run_lib
from tfexperts.models import presets
from tfexperts.train import config as config_lib
from tfexperts.train import strategy as strategy_lib

FLAGS = flags.FLAGS
STAGES = artifacts.STAGES
D = config_lib.default

flags.DEFINE_string("workdir", D("workdir"), "Where checkpoints, summaries and finished models "
                    "go.")
flags.DEFINE_list("stage", D("stage"), f"Stages to run, in order: {', '.join(STAGES)}.")
flags.DEFINE_string("tpu", D("tpu"), "TPU name or grpc:// address (`local` on a TPU VM).")
flags.DEFINE_float("tpu_timeout", D("tpu_timeout"), "Seconds to wait for the TPU to accept the "
                   "connection before failing with its address.")
flags.DEFINE_enum("strategy", D("strategy"), strategy_lib.STRATEGIES,
                  "Distribution strategy without --tpu (auto: MirroredStrategy over GPUs, else one "
                  "device; multi_worker reads TF_CONFIG).")
flags.DEFINE_string("dataset", D("dataset"), "tfds name[/config][:version] of the upstream "
                    "dataset.")
flags.DEFINE_string("data_dir", D("data_dir"), "tfds data dir (default: tfds's own).")
flags.DEFINE_string("split", D("split"), "Upstream split.")
flags.DEFINE_string("hierarchy", D("hierarchy"), "Label hierarchy file (JSON or TSV); default: the "
                    "offline dataset's shipped hierarchy.")
flags.DEFINE_string("image_key", D("image_key"), "Image feature key.")
flags.DEFINE_string("label_key", D("label_key"), "Label feature key (ClassLabel, "
                    "Sequence(ClassLabel) or multi-hot).")
flags.DEFINE_bool("prepare_offline", D("prepare_offline"), "Build the offline tfexperts_* dataset "
                  "into --data_dir when it is missing.")
flags.DEFINE_list("experts", D("experts"), "Explicit expert domains (hierarchy node names); "
                  "default: the --num_experts largest nodes.")
flags.DEFINE_integer("num_experts", D("num_experts"), "How many domains to choose automatically "
                     "(top by count).", lower_bound=1)
flags.DEFINE_integer("min_count", D("min_count"), "Minimum images for a node to become an expert "
                     "domain.", lower_bound=1)
flags.DEFINE_enum("slices", D("slices"), config_lib.SLICES, "Expert data: the domains' images, or "
                  "random subsets of the same sizes (control).")
flags.DEFINE_string("model", D("model"), f"Model preset: {', '.join(presets.PRESETS)}.")
flags.DEFINE_float("width", D("width"), "Override the preset's width multiplier.")
flags.DEFINE_integer("groups", D("groups"), "Override the GroupNorm group count.", lower_bound=1)
flags.DEFINE_integer("resolution", D("resolution"), "Training resolution (images are resized to "
                     "it).", lower_bound=1)
flags.DEFINE_string("preprocess", D("preprocess"), "Training preprocessing after decode; {res} is "
                    "replaced by --resolution.")
flags.DEFINE_integer("batch_size", D("batch_size"), "Global batch size (split across replicas).",
                     lower_bound=1)
flags.DEFINE_integer("baseline_steps", D("baseline_steps"), "Steps of stage 1.", lower_bound=1)
flags.DEFINE_integer("expert_steps", D("expert_steps"), "Steps of every expert (and of the EPN), "
                     "whatever its slice size.", lower_bound=1)
flags.DEFINE_float("base_lr", D("base_lr"), "Learning rate at batch 512 (scaled linearly with "
                   "batch).")
flags.DEFINE_float("momentum", D("momentum"), "SGD momentum.", lower_bound=0.0)
flags.DEFINE_integer("warmup_steps", D("warmup_steps"), "Linear warm-up steps.", lower_bound=0)
flags.DEFINE_enum("decay", D("decay"), list(config_lib.DECAYS), "Decay after warm-up (step: x0.1 "
                  "at 30%, 60%, 90%).")
flags.DEFINE_float("weight_decay", D("weight_decay"), "L2 weight decay on kernels.",
                   lower_bound=0.0)
flags.DEFINE_float("label_smoothing", D("label_smoothing"), "Label smoothing (single-label data).",
                   lower_bound=0.0)
flags.DEFINE_float("mixup_alpha", D("mixup_alpha"), "Mixup Beta(alpha, alpha); 0 turns it off.",
                   lower_bound=0.0)
flags.DEFINE_enum("mixed_precision", D("mixed_precision"), config_lib.MIXED_PRECISION, "Compute "
                  "dtype: auto = bfloat16 on TPU, float16 on GPU, float32 on CPU.")
flags.DEFINE_integer("checkpoint_every", D("checkpoint_every"), "Steps between checkpoints.",
                     lower_bound=1)
flags.DEFINE_integer("log_every", D("log_every"), "Steps between progress lines.", lower_bound=1)
flags.DEFINE_integer("steps_per_loop", D("steps_per_loop"), "Steps per tf.function call (raise on "
                     "TPU).", lower_bound=1)
flags.DEFINE_integer("seed", D("seed"), "Seed of data order, augmentation and initialisation.")
flags.DEFINE_bool("deterministic", D("deterministic"), "Deterministic ops (bit-identical reruns; "
                  "slower).")
checks.must_be_positive("width", "base_lr")


def check_flags(argv):
  """Checks every flag that needs nothing loaded; raises UserError naming a bad value."""
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {argv[1:]}")
  checks.required("workdir", FLAGS.workdir, " (checkpoints and finished models go there)")
  checks.existing_path("hierarchy", FLAGS.hierarchy)
  train_config()  # checks every setting (TrainConfig validates itself)


def train_config():
  """The `TrainConfig` the flags ask for (every field is a flag of the same name)."""
  return config_lib.TrainConfig(**{name: FLAGS[name].value
                                   for name in config_lib.TrainConfig.__dataclass_fields__})


def main(argv):
  """Runs the stages named by --stage with the flags' settings."""
  check_flags(argv)
  run_lib.take_leases(*[os.path.join(FLAGS.workdir, s) for s in STAGES if s in FLAGS.stage])
  from tfexperts.train import workdir  # pylint: disable=g-import-not-at-top
  own = [f for f in FLAGS.flags_by_module_dict()[__name__] if f.value is not None]
  workdir.train(train_config(), flag_lines=[f.serialize() for f in own])


def run():
  """Console-script entry point (`train_experts`)."""
  run_lib.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
