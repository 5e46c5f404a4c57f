"""The training stages of bin/train_experts, each a resumable run of `loop.train`.

Workdir layout (all stages share it):
  config.json, flags.txt            the recorded flags (`settings`: a later run may not change
                                    their meaning; flags.txt works as --flagfile)
  domains.json                      chosen expert domains with their image counts (kept on resume)
  baseline/{ckpt,tb,final}          stage 1: the baseline B on all upstream data
  full/<expert>/{ckpt,tb,final}     a full expert: B fine-tuned on its slice
  adapter/expert_NN/{ckpt,tb}       adapter bank, expert NN trained on its slice (in turn)
  adapter/final                     the whole adapter bank
  patch/...                         the same for model-patch experts
  epn/{ckpt,tb,final}               expert prediction network (multi-label over domains)
`final` directories are finished models (`tfexperts.models.finished`); their record
(`tfexperts.artifacts.ModelRecord`) carries each expert's node, image count and empirical prior
over upstream labels (for label-matching selection). `STAGE_RUNNERS` maps each stage name
(`artifacts.STAGES`) to the function that runs it; `run_stages` runs a list of them in order.

Every expert trains for the same number of steps whatever its slice size. Experts of a bank train
one after the other, each with a fresh optimizer, so the momentum and weight decay of one expert
never move another expert's rows.
"""
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import bounds
from tfexperts.data import upstream as upstream_lib
from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.models import finished
from tfexperts.models import patches
from tfexperts.train import loop
from tfexperts.train import seeding
from tfexperts.train import strategy as strategy_lib

STAGES = artifacts.STAGES


@dataclasses.dataclass
class StageContext:
  """Everything the stages share: data, model, strategy and run settings.

  Attributes:
    workdir: root of the run's outputs.
    strategy: the tf.distribute strategy.
    upstream: a `tfexperts.data.upstream.Upstream`.
    domains: the chosen expert domains (list of `upstream.Domain`).
    preset, model_overrides: `bit.create_model` arguments.
    preprocess: training preprocessing spec (after decode), e.g. "resize(64)|flip_lr|...".
    resolution: input size, recorded in metadata.
    baseline_config, expert_config: `loop.LoopConfig` of stage 1 and of every expert / the EPN.
    slices: "semantic" (the domains' images) or "random" (random subsets of the same sizes).
    seed: data and initialisation seed.
  """
  workdir: str
  strategy: tf.distribute.Strategy
  upstream: upstream_lib.Upstream
  domains: list
  preset: str
  model_overrides: dict
  preprocess: str
  resolution: int
  baseline_config: loop.LoopConfig
  expert_config: loop.LoopConfig
  slices: str = "semantic"
  seed: int = 0

  @property
  def multi_label(self):
    return self.upstream.spec.kind != "single"


def expert_dirname(domain):
  """A directory name for an expert: its id and node name with unsafe characters replaced."""
  return f"{domain.expert_id:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', domain.name)}"


def _to_loop_batch(multi_label, extra=None):
  def fn(batch):
    out = {"image": batch["image"], "label": batch["labels"] if multi_label else batch["label"]}
    if "expert_id" in batch:
      out["expert_id"] = batch["expert_id"]
    if extra:
      out.update(extra(batch))
    return out
  return fn


def upstream_dataset_fn(upstream, source, preprocess, seed, extra=None):
  """A `loop.TrainTask.dataset_fn` over upstream data.

  Args:
    upstream: the `tfexperts.data.upstream.Upstream` that `source` reads.
    source: `(**pipeline_kwargs) -> tf.data.Dataset` of upstream examples (e.g.
      `upstream.baseline_dataset` or `upstream.weighted_dataset` with its weights bound).
    preprocess: the training preprocessing spec (after decode).
    seed: data order and augmentation seed.
    extra: optional `batch -> dict` of more training targets.

  Returns:
    `(ctx, per_replica_batch, start_step) -> dataset` of `{"image", "label", ...}` batches that
    resume at `start_step`.
  """
  multi_label = upstream.spec.kind != "single"

  def make(ctx, per_replica_batch, start_step):
    ds = source(preprocess=preprocess, shuffle_buffer=2048, repeat=True, seed=seed,
                **loop.resumed_input(ctx, per_replica_batch, start_step))
    return ds.map(_to_loop_batch(multi_label, extra))
  return make


def _make_dataset_fn(sc, source, extra=None):
  return upstream_dataset_fn(sc.upstream, source, sc.preprocess, sc.seed, extra)


def _expert_source(sc, expert_id):
  if sc.slices == "random":
    return lambda **kw: random_slice_dataset(sc, expert_id, **kw)
  return lambda **kw: sc.upstream.expert_dataset(sc.domains, expert_id, **kw)


def random_slice_dataset(sc, expert_id, **pipeline_kwargs):
  """Control for semantic slices: a seeded random subset of the upstream data of the same size as
  expert `expert_id`'s slice, with that expert id attached. Returns a `tf.data.Dataset`."""
  rng = np.random.default_rng(sc.seed * 1000 + expert_id)
  chosen = np.zeros(sc.upstream.num_images, bool)
  chosen[rng.choice(sc.upstream.num_images, sc.domains[expert_id].count, replace=False)] = True
  return sc.upstream.subset_dataset(chosen, expert_id=expert_id, **pipeline_kwargs)


def label_priors(upstream, domains):
  """Each domain's empirical distribution over upstream labels (from the images it trains on).

  Returns a float64 array `[len(domains), num_classes]`, rows summing to 1 (all labels of every
  image inside the domain counted once each).
  """
  membership = upstream.membership(domains).astype(np.float64)  # [classes, domains]
  totals = np.zeros((len(domains), upstream.num_classes))
  labels = upstream.raw_dataset().map(
      lambda ex: upstream_lib.multi_hot(ex["label"], upstream.spec))
  for batch in labels.batch(4096).as_numpy_iterator():
    hot = batch.astype(np.float64)  # [b, classes]
    inside = (hot @ membership) > 0  # [b, domains]
    totals += inside.T.astype(np.float64) @ hot
  return totals / np.maximum(totals.sum(axis=1, keepdims=True), 1.0)


def _expert_infos(sc, priors):
  return [artifacts.ExpertInfo(expert_id=d.expert_id, name=d.name, node=d.name,
                               num_images=d.count, label_prior=priors[d.expert_id].tolist(),
                               slices=sc.slices)
          for d in sc.domains]


def model_record(upstream, kind, name, steps, resolution, preset=None, model_overrides=None,
                 **extra):
  """The `artifacts.ModelRecord` of a model trained `steps` steps on `upstream` data.

  `preset`, `model_overrides`: how it was built (None for a model rebuilt from a module);
  `extra`: more record fields (experts, domains, dat_class_weights).
  """
  return artifacts.ModelRecord(
      kind=kind, name=name, upstream_dataset=upstream.name, upstream_split=upstream.split,
      num_upstream_images=upstream.num_images, num_upstream_classes=upstream.num_classes,
      upstream_class_names=list(upstream.class_names), preset=preset,
      model_overrides=model_overrides or {}, resolution=resolution, input_range=[0.0, 1.0],
      steps=steps, multi_label=upstream.spec.kind != "single", **extra)


def _record(sc, kind, name, steps, **extra):
  return model_record(sc.upstream, kind, name, steps, sc.resolution, sc.preset,
                      sc.model_overrides, **extra)


def save_final_on_chief(strategy, model, directory, record):
  """Saves the finished model (`finished.save_final`) on the chief worker only.

  Every worker trains; only the chief writes (the others would race on the same directory).
  """
  if strategy_lib.is_chief(strategy):
    finished.save_final(model, directory, record)


def _save_final(sc, model, directory, record):
  save_final_on_chief(sc.strategy, model, directory, record)


def logits(model, batch):
  """The `loop.TrainTask.forward` of a model with a `logits` output: logits of `batch`'s images."""
  return model(batch["image"])["logits"]


def _routed_logits(model, batch):
  return model(batch["image"], batch["expert_id"])["logits"]


def train_in(strategy, task, config, directory):
  """Runs (or resumes) `task` with checkpoints in `directory`/ckpt and summaries in /tb.

  Returns `loop.train`'s `(model, history)`.
  """
  print(f"\n== {task.name}: {config.total_steps} steps at global batch "
        f"{config.global_batch_size}", flush=True)
  return loop.train(strategy, task, config, os.path.join(directory, "ckpt"),
                    os.path.join(directory, "tb"))


def _run(sc, task, config, directory):
  return train_in(sc.strategy, task, config, directory)


def is_finished(directory):
  """True (saying so) when `directory`/final holds a finished model, which is not retrained."""
  final = os.path.join(directory, "final")
  if finished.is_final(final):
    print(f"\n== {directory}: finished model present; not retrained.", flush=True)
    return True
  return False


def _load_baseline(sc):
  final = os.path.join(sc.workdir, "baseline", "final")
  if not finished.is_final(final):
    raise FileNotFoundError(f"Stage needs the baseline at {final!r}; run --stage=baseline first.")
  model, _ = finished.load_final(final)
  return model


def run_baseline(sc):
  """Stage 1: trains the baseline on all upstream data; returns its final directory."""
  directory = os.path.join(sc.workdir, "baseline")
  if not is_finished(directory):
    def make_model():
      seeding.set_seed(sc.seed)
      return bit.create_model(sc.preset, num_classes=sc.upstream.num_classes,
                              **sc.model_overrides)
    task = loop.TrainTask("baseline", sc.upstream.num_classes, make_model,
                          _make_dataset_fn(sc, sc.upstream.baseline_dataset), logits)
    model, _ = _run(sc, task, sc.baseline_config, directory)
    _save_final(sc, model, os.path.join(directory, "final"),
                _record(sc, "baseline", "baseline", sc.baseline_config.total_steps))
  return os.path.join(directory, "final")


def run_full(sc, priors):
  """Stage 2 (full): fine-tunes a copy of the baseline on each expert's slice."""
  outputs = []
  for domain in sc.domains:
    directory = os.path.join(sc.workdir, "full", expert_dirname(domain))
    if not is_finished(directory):
      task = loop.TrainTask(f"full/{domain.name}", sc.upstream.num_classes,
                            lambda: _load_baseline(sc),
                            _make_dataset_fn(sc, _expert_source(sc, domain.expert_id)), logits)
      model, _ = _run(sc, task, sc.expert_config, directory)
      record = _record(sc, "full", domain.name, sc.expert_config.total_steps,
                       experts=[_expert_infos(sc, priors)[domain.expert_id]])
      _save_final(sc, model, os.path.join(directory, "final"), record)
    outputs.append(os.path.join(directory, "final"))
  return outputs


def _bank_rows_decayed(expert_id):
  def tensors(model):
    return [v[expert_id] for v in model.trainable_variables if v.path.endswith("kernel")]
  return tensors


def _run_bank(sc, kind, create_bank, priors):
  """Trains a bank's experts in turn (each from where the previous one left the bank)."""
  directory = os.path.join(sc.workdir, kind)
  if is_finished(directory):
    return os.path.join(directory, "final")
  bank = None
  previous_ckpt = None
  for domain in sc.domains:
    expert_dir = os.path.join(directory, f"expert_{domain.expert_id:02d}")

    def make_model(previous_ckpt=previous_ckpt):
      # Seeded like the baseline and the EPN: the bank's initial weights must not depend on
      # what this process trained before (a run of this stage alone, or after the full experts).
      seeding.set_seed(sc.seed)
      model = create_bank(_load_baseline(sc), len(sc.domains))
      if previous_ckpt:  # the bank as the previous expert's run left it
        loop.restore_model(model, previous_ckpt)
      return model

    task = loop.TrainTask(f"{kind}/{domain.name}", sc.upstream.num_classes, make_model,
                          _make_dataset_fn(sc, _expert_source(sc, domain.expert_id)),
                          _routed_logits, _bank_rows_decayed(domain.expert_id))
    bank, _ = _run(sc, task, sc.expert_config, expert_dir)
    previous_ckpt = tf.train.latest_checkpoint(os.path.join(expert_dir, "ckpt"))
  record = _record(sc, artifacts.STAGE_ARTIFACT[kind], f"{kind}_bank",
                   sc.expert_config.total_steps, experts=_expert_infos(sc, priors))
  _save_final(sc, bank, os.path.join(directory, "final"), record)
  return os.path.join(directory, "final")


def run_adapter(sc, priors):
  """Stage 2 (adapter): trains one residual adapter per expert on a frozen baseline."""
  return _run_bank(sc, "adapter", adapters.create_adapter_experts, priors)


def run_patch(sc, priors):
  """Stage 2 (patch): trains one GroupNorm patch per expert on a frozen baseline."""
  return _run_bank(sc, "patch", patches.create_patch_bank, priors)


def _copy_backbone(source_model, target_model):
  """Assigns every non-head variable of `target_model` from the same path in `source_model`.

  Raises:
    RuntimeError: a backbone variable of the target has no source of the same path and shape
      (a renamed layer would otherwise leave it at its random initialisation, silently).
  """
  sources = {v.path: v for v in source_model.weights}
  missing = []
  for target in target_model.weights:
    if "head" in target.path:
      continue
    source = sources.get(target.path)
    if source is None or tuple(source.shape) != tuple(target.shape):
      missing.append(f"{target.path} {tuple(target.shape)}")
      continue
    target.assign(source)
  if missing:
    raise RuntimeError(f"{len(missing)} backbone variables found no source of the same path and "
                       f"shape in the baseline, e.g. {missing[:3]}")


def run_epn(sc):
  """Trains the expert prediction network: multi-label over domains, from the baseline's weights."""
  directory = os.path.join(sc.workdir, "epn")
  if is_finished(directory):
    return os.path.join(directory, "final")
  membership = tf.constant(sc.upstream.membership(sc.domains).astype(np.float32))
  num_domains = len(sc.domains)

  def domain_targets(batch):
    return {"label": tf.cast(tf.matmul(batch["labels"], membership) > 0, tf.float32)}

  def make_model():
    seeding.set_seed(sc.seed)
    baseline = _load_baseline(sc)
    model = bit.ResNetV2.from_config({**baseline.get_config(), "num_classes": num_domains})
    model.build((None, None, None, 3))
    _copy_backbone(baseline, model)
    return model

  config = dataclasses.replace(sc.expert_config, multi_label=True, label_smoothing=0.0,
                               mixup_alpha=0.0)
  task = loop.TrainTask("epn", num_domains, make_model,
                        _make_dataset_fn(sc, sc.upstream.baseline_dataset, domain_targets),
                        logits)
  model, _ = _run(sc, task, config, directory)
  record = _record(sc, "epn", "epn", config.total_steps,
                   domains=[artifacts.DomainInfo(d.expert_id, d.name, d.count)
                            for d in sc.domains])
  _save_final(sc, model, os.path.join(directory, "final"), record)
  return os.path.join(directory, "final")


# Stage name -> runner; runners of the stages in NEEDS_PRIORS also take the label priors.
STAGE_RUNNERS = {"baseline": run_baseline, "full": run_full, "adapter": run_adapter,
                 "patch": run_patch, "epn": run_epn}
NEEDS_PRIORS = ("full", "adapter", "patch")
assert tuple(STAGE_RUNNERS) == STAGES


def run_stages(sc, names):
  """Runs the stages `names` (a list of STAGES) in order, each resuming or skipping as it can.

  The label priors are computed once, before the first stage that needs them. Returns
  `{stage: its finished model's directory, or a list of them for full experts}`; raises UserError
  naming an unknown stage before running anything.
  """
  bounds.all_of("stage", names, STAGES)
  priors = None
  outputs = {}
  for name in names:
    if name in NEEDS_PRIORS:
      if priors is None:
        priors = label_priors(sc.upstream, sc.domains)
      outputs[name] = STAGE_RUNNERS[name](sc, priors)
    else:
      outputs[name] = STAGE_RUNNERS[name](sc)
  return outputs
