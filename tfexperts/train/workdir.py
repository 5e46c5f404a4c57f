"""`train(TrainConfig)`: what bin/train_experts does after parsing its flags, as a library call.

Makes the strategy, records (or checks) the workdir's settings (`settings`), opens the upstream
data, chooses (or reloads) the expert domains, and runs the asked stages in order
(`stages.run_stages`), each resuming from its checkpoints and skipping finished models.
"""
import json
import os

import keras
import tensorflow as tf

from tfexperts import errors
from tfexperts.data import builders
from tfexperts.data import hierarchy as hierarchy_lib
from tfexperts.data import offline
from tfexperts.data import upstream as upstream_lib
from tfexperts.train import loop
from tfexperts.train import settings as settings_lib
from tfexperts.train import stages
from tfexperts.train import strategy as strategy_lib


def mixed_precision_policy(mixed_precision, tpu):
  """The Keras policy name for `mixed_precision` (one of config.MIXED_PRECISION), or None."""
  if mixed_precision == "auto":
    if tpu:
      return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else None
  return {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[mixed_precision]


def open_upstream(config):
  """The upstream dataset of `config`; the hierarchy and `experts` are checked before any data is
  built. Raises UserError naming a missing hierarchy or unknown expert nodes."""
  offline_name = config.dataset.split("/")[0].split(":")[0] in builders.NAMES
  if config.hierarchy is None and not offline_name:
    raise errors.UserError(f"--hierarchy is required for dataset {config.dataset!r} (only the "
                           "offline tfexperts_* datasets ship one).")
  hierarchy = hierarchy_lib.load_hierarchy(config.hierarchy or offline.upstream_hierarchy_path())
  unknown = [e for e in config.experts if e not in hierarchy]
  if unknown:
    raise errors.UserError(f"--experts names unknown hierarchy nodes {unknown}. Known nodes: "
                           f"{list(hierarchy.nodes)[:50]}")
  if offline_name and config.prepare_offline:
    offline.prepare_offline_datasets(config.data_dir, configs=(config.dataset.split(":")[0],))
  return upstream_lib.Upstream(config.dataset, hierarchy, split=config.split,
                               data_dir=config.data_dir, image_key=config.image_key,
                               label_key=config.label_key)


def expert_domains(config, upstream):
  """The expert domains: as recorded in the workdir (a resumed run keeps the expert indices its
  checkpoints use), else `config.experts`, else the `num_experts` largest nodes."""
  path = os.path.join(config.workdir, "domains.json")
  if tf.io.gfile.exists(path):
    domains, _ = upstream_lib.load_domains(path)
    print(f"Expert domains (recorded in {path}):\n"
          + upstream_lib.format_domains(domains, upstream.num_images))
    return domains
  counts = upstream.count_nodes()
  if config.experts:
    domains = [upstream_lib.Domain(i, name, counts[name])
               for i, name in enumerate(config.experts)]
    print("Expert domains (explicit):\n" + upstream_lib.format_domains(domains,
                                                                       upstream.num_images))
    upstream_lib.save_domains(path, domains, dataset=upstream.name, split=upstream.split,
                              num_images=upstream.num_images, explicit=True)
    return domains
  return upstream_lib.select_expert_domains(upstream, top_k=config.num_experts,
                                            min_count=config.min_count, output_path=path)


def train(config, flag_lines=None):
  """Runs the stages `config.stage` of a `TrainConfig` in `config.workdir`.

  `flag_lines` (flags.txt) default to `config.flag_lines()`. Returns `{"workdir", "stages",
  "experts", "outputs"}` (outputs: each stage's finished model directories). Raises UserError
  when the workdir was created with settings that change the meaning of what is on disk (see
  `settings`), or naming a bad dataset, hierarchy node or stage.
  """
  if not config.workdir:
    raise errors.UserError("A training run needs a workdir (checkpoints and finished models go "
                           "there).")
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy_lib.make_strategy(config.tpu, config.strategy, config.tpu_timeout)
  policy = mixed_precision_policy(config.mixed_precision, config.tpu)
  if policy:
    keras.mixed_precision.set_global_policy(policy)
  tf.io.gfile.makedirs(config.workdir)
  settings_lib.check_and_record(
      config.workdir, config.settings(),
      flag_lines if flag_lines is not None else config.flag_lines(),
      write=strategy_lib.is_chief(strategy))
  upstream = open_upstream(config)
  domains = expert_domains(config, upstream)
  overrides = {k: v for k, v in (("width", config.width), ("groups", config.groups))
               if v is not None}
  common = dict(global_batch_size=config.batch_size, multi_label=upstream.spec.kind != "single",
                loss_scaling=policy == "mixed_float16")
  sc = stages.StageContext(
      workdir=config.workdir, strategy=strategy, upstream=upstream, domains=domains,
      preset=config.model, model_overrides=overrides,
      preprocess=config.preprocess.format(res=config.resolution), resolution=config.resolution,
      baseline_config=loop.LoopConfig.taking(config, total_steps=config.baseline_steps, **common),
      expert_config=loop.LoopConfig.taking(config, total_steps=config.expert_steps, **common),
      slices=config.slices, seed=config.seed)
  try:
    outputs = stages.run_stages(sc, config.stage)
  except errors.DivergedError as e:
    raise errors.DivergedError(
        f"{e} --base_lr={config.base_lr:g} is recorded in {config.workdir}: train with a lower "
        "--base_lr (or more --warmup_steps) in a new --workdir.", run=e.run, step=e.step,
        learning_rate=e.learning_rate, checkpoint=e.checkpoint) from e
  print(f"\nDone: stages {config.stage} in {config.workdir}", flush=True)
  summary = {"workdir": config.workdir, "stages": config.stage,
             "experts": [d.name for d in domains]}
  print(json.dumps(summary), flush=True)
  return {**summary, "outputs": outputs}
