"""Scores a pool of experts on a task with one feature pass, for any set of proxies.

Features of the task's training images (train800 by default) are embedded once per expert and
cached on disk; the baseline's upstream logits (label matching, LEEP) and the expert prediction
network's logits (domain prediction) are cached the same way under the handle plus `#logits`.
"""
import dataclasses
import time

import numpy as np
import tensorflow as tf

from tfexperts import defaults
from tfexperts import errors
from tfexperts import precision as precision_lib
from tfexperts.data import tasks as tasks_lib
from tfexperts.hub import load as hub_load
from tfexperts.hub import published
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import native
from tfexperts.hub import openvino_engine
from tfexperts.select import feature_cache
from tfexperts.select import features as features_lib
from tfexperts.select import proxies as proxies_lib
from tfexperts.select import task_images



@dataclasses.dataclass
class Candidates:
  """The experts to choose from, plus the modules some proxies need.

  Attributes:
    experts: list of `hub.load.Expert` (baseline, full, adapter, patch).
    baseline: the expert with the upstream head (label matching, LEEP), or None.
    epn: the expert prediction network (domain prediction), or None.
  """
  experts: list
  baseline: object = None
  epn: object = None

  def names(self):
    return [expert_key(e) for e in self.experts]


def expert_key(expert):
  """A name unique within a collection: the module's directory name, else the expert's name."""
  return expert.metadata.module or expert.name


def load_candidates(specs):
  """Loads experts from collection directories, single handles and/or published collections:
  selection's edge, where each handle is resolved once (`hub.load.reference`).

  Takes a str (comma-separated) or a list; "tfhub:NAME" is a published collection
  (`hub.published`). Returns `Candidates`; a collection also supplies its baseline and EPN.
  Modules load lazily.
  """
  if isinstance(specs, str):
    specs = [s for s in specs.split(",") if s]
  experts, baseline, epn = [], None, None
  for spec in specs:
    if published.is_published(spec):
      loaded = published.load_published(spec)
      experts += loaded
      baseline = baseline or next((e for e in loaded if e.kind == "baseline"), None)
    elif hub_load.is_collection_handle(spec):
      collection = hub_load.load_collection(spec)
      experts += collection.experts
      baseline = baseline or collection.baseline
      epn = epn or collection.epn
    else:
      expert = hub_load.load_expert(spec, lazy=True)
      experts.append(expert)
      if expert.kind == "baseline":
        baseline = baseline or expert
  keys = [expert_key(e) for e in experts]
  duplicates = sorted({k for k in keys if keys.count(k) > 1})
  if duplicates:
    raise errors.UserError(f"Expert names must be unique; {duplicates} appear more than once in "
                           f"{specs!r}.")
  if not experts:
    raise errors.UserError(f"No experts found in {specs!r}.")
  return Candidates(experts, baseline, epn)


@dataclasses.dataclass
class FeatureSource:
  """Where task images come from: task, split, data dir, resolution, batch size, cache.

  `resolution=None` feeds each module at its own size, `hub.metadata.input_resolution` (the
  metadata's `input.resolution`, else 224); an integer overrides it for every module.
  `image_memory_bytes` bounds the decoded images kept in memory between experts of one size
  (`task_images.ImageStore`; 0 decodes the split again for every expert).
  `engine` runs the experts' pre-logits with "tensorflow" or "openvino" (`hub.openvino_engine`:
  converted once, the IR cached under `engine_cache_dir`, default `cache_dir`; a module it cannot
  convert, or a strategy over several replicas (said in one line), uses TensorFlow). Logits
  always come from TensorFlow.
  `precision` (`tfexperts.precision`) is what tfexperts' own modules are embedded at (rebuilt
  under that mixed policy, `hub.native`); other modules, and every module under a strategy, run
  their SavedModel at float32, which `precision_of` and one notice line per module say.
  """
  task: tasks_lib.Task
  split: str = "train800"
  data_dir: str = None
  resolution: int = None
  batch_size: int = defaults.EMBED_BATCH_SIZE
  cache_dir: str = None
  strategy: tf.distribute.Strategy = None
  image_memory_bytes: int = task_images.DEFAULT_MAX_BYTES
  engine: str = "tensorflow"
  engine_cache_dir: str = None
  precision: str = precision_lib.DEFAULT

  def __post_init__(self):
    precision_lib.check(self.precision)
    self._noticed = set()
    openvino_engine.check_engine(self.engine)
    if self.engine != "tensorflow" and not self._single_device():
      print(f"engine {self.engine} runs on one device; embedding with TensorFlow over the "
            f"strategy's {self.strategy.num_replicas_in_sync} replicas instead.", flush=True)
    self.cache = feature_cache.FeatureCache(self.cache_dir) if self.cache_dir else None
    self.images = task_images.ImageStore(self.task, self.split, self.data_dir, self.batch_size,
                                         self.image_memory_bytes)
    self.stats = features_lib.EmbedStats()
    self.native = native.NativeRunner()
    self._ran = {}  # handle -> the CacheKey its pre-logits were last read or embedded under

  def key(self, expert, output="pre_logits", engine=None):
    """The `CacheKey` of `expert`'s `output` on this split: keyed on the module's content and the
    engine (`engine`, default: the one this source runs `output` with)."""
    suffix = "" if output == "pre_logits" else "#" + output
    resolution = self.resolution_of(expert)
    engine = engine or self._engine_for(output)
    return feature_cache.CacheKey(handle=expert.handle + suffix,
                                  module=expert.content_id + suffix, task=self.task.name,
                                  split=self.split, resolution=resolution,
                                  preprocessing=tasks_lib.eval_preprocess(resolution),
                                  engine=engine, precision=self.precision_of(expert, output,
                                                                             engine))

  def _native(self, expert):
    return (self.strategy is None and isinstance(expert, hub_load.Expert)
            and native.may_run_natively(expert.metadata))

  def precision_of(self, expert, output="pre_logits", engine="tensorflow"):
    """The precision `expert`'s `output` is embedded at with `engine`: `self.precision` on
    OpenVINO (any module) and for tfexperts' own modules' pre-logits run natively in TensorFlow,
    else float32 (printed once per module when it differs)."""
    if self.precision == "float32":
      return "float32"
    if output == "pre_logits" and (engine == "openvino" or self._native(expert)):
      return self.precision
    if expert.handle not in self._noticed:
      self._noticed.add(expert.handle)
      print(f"notice: {expert.handle} {output} embedded at float32, not {self.precision} (only "
            "tfexperts' own modules, run in-process without a strategy, are rebuilt at a "
            "reduced precision).", flush=True)
    return "float32"

  def resolution_of(self, module):
    """The image size `module` (an Expert, the baseline or the EPN) is fed at."""
    return metadata_lib.input_resolution(module.metadata, self.resolution)

  def describe_resolution(self, experts):
    """One line: the size `experts` are fed at, and whether metadata or an override decides."""
    if self.resolution is not None:
      return f"resolution: {self.resolution} px for every expert (--resolution overrides metadata)"
    sizes = {}
    for expert in experts:
      sizes.setdefault(self.resolution_of(expert), []).append(expert_key(expert))
    per_size = "; ".join(f"{size} px for {', '.join(names)}"
                         for size, names in sorted(sizes.items()))
    return (f"resolution: each expert's metadata input.resolution (else {defaults.RESOLUTION}): "
            + per_size)

  def _dataset(self, resolution):
    return lambda: self.images.dataset(resolution)

  def _loaded(self, expert):
    # Loaded here, not on first call: under a strategy that call is inside a replica function.
    # (Loading under the strategy's scope would mirror the variables, but restored functions then
    # refuse to run in the cross-replica context that the load's own check uses.)
    if self.strategy is not None:
      expert.module  # pylint: disable=pointless-statement
    return expert

  def _engine_for(self, output):
    return self.engine if output == "pre_logits" and self._single_device() else "tensorflow"

  def _single_device(self):
    return self.strategy is None or self.strategy.num_replicas_in_sync == 1

  def engine_precision(self):
    """The precision the OpenVINO engine runs at: this source's `precision`."""
    return self.precision

  def _openvino_embedder(self, expert):
    return openvino_engine.load(expert.ref, self.engine_cache_dir or self.cache_dir,
                                self.engine_precision(), self.resolution_of(expert))

  def _native_embedder(self, expert):
    """`expert`'s pre-logits as an in-process model at `self.precision` (hub.native: no graph to
    load and optimise per module), or None when it does not verify as one (one notice line at a
    reduced precision: it then runs its SavedModel at float32)."""
    embed = self.native.load(expert.ref, self.precision)
    if embed is None and self.precision != "float32":
      print(f"notice: {expert.handle} did not verify as a native model; embedded at float32 "
            f"with hub.load, not {self.precision}.", flush=True)
    return embed

  def _cached(self, key):
    return self.cache is not None and tf.io.gfile.exists(self.cache.path(key))

  def features(self, expert):
    """`Features` (features, labels, images_embedded) of the split by `expert`'s pre-logits.

    The model is chosen before the cache is written, so features a fallback computes (TensorFlow
    for OpenVINO, the SavedModel at float32 for a native model that does not verify) are cached
    (and may already be) under the key of what ran, never under the key asked for.
    """
    key, strategy, embed = self.key(expert), self.strategy, None
    if key.engine == "openvino":
      strategy = None  # one device (checked by _engine_for): the engine runs outside it
      if not self._cached(key):
        converted = (self._openvino_embedder(expert) if isinstance(expert, hub_load.Expert)
                     else None)
        if converted is None:
          key, strategy = self.key(expert, engine="tensorflow"), self.strategy
        else:
          embed = converted.function
    if key.engine == "tensorflow" and self._native(expert) and not self._cached(key):
      embed = self._native_embedder(expert)
      if embed is None and key.precision != "float32":
        key = dataclasses.replace(key, precision="float32")
    make_model = (lambda: embed) if embed is not None else (lambda: self._loaded(expert).embed)
    self._ran[expert.handle] = key
    return features_lib.cached_features(self.cache, key, make_model,
                                        self._dataset(self.resolution_of(expert)),
                                        strategy=strategy, stats=self.stats)

  def ran(self, expert):
    """The `CacheKey` (its `engine` and `precision` say what ran, after any fallback) of the
    features `features(expert)` last returned, or None before that call."""
    return self._ran.get(expert.handle)

  def logits(self, module):
    """`Features` whose features are `module`'s upstream-head logits on the split."""
    return features_lib.cached_features(self.cache, self.key(module, "logits"),
                                        lambda: self._loaded(module).logits,
                                        self._dataset(self.resolution_of(module)),
                                        strategy=self.strategy, stats=self.stats)


def _softmax(logits):
  z = logits - logits.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def _sigmoid(logits):
  return 1.0 / (1.0 + np.exp(-logits))


def score(candidates, source, proxies=("knn",), seed=0, precision=None):
  """Scores every candidate with every proxy that has what it needs.

  Each proxy gets exactly the `ProxyInputs` fields its registration `requires` (and `seed` when
  it takes one); an expert lacking one of them (e.g. the baseline for domain prediction, which
  needs the expert's domain among the EPN's) is not scored by that proxy.

  Args:
    candidates: `Candidates`.
    source: `FeatureSource` (task images, cache).
    proxies: proxy names (see `proxies.PROXIES`).
    seed: seed of the proxies that take one (`random`, `linear_probe`).
    precision: embedding precision (`tfexperts.precision`); None keeps `source.precision`,
      else it replaces it.

  Returns:
    `(scores, seconds)`: `scores[proxy][expert_key]` floats (higher is better; experts a proxy
    cannot score are absent), and the seconds spent per proxy plus `"features"` for the feature
    pass.
  """
  unknown = [p for p in proxies if p not in proxies_lib.PROXIES]
  if unknown:
    raise errors.UserError(f"Unknown proxies {unknown}. Known proxies: "
                           f"{sorted(proxies_lib.PROXIES)}."
                           f"{errors.did_you_mean(unknown[0], proxies_lib.PROXIES)}")
  if precision is not None:
    source.precision = precision_lib.check(precision)
  registered = [proxies_lib.get(p) for p in proxies]
  required = set().union(*(p.requires for p in registered)) if registered else set()
  seconds = {}
  start = time.perf_counter()
  feats = {}
  if required & {"features", "labels"}:
    # Experts of one input size in turn (stable), so each size's images are decoded once.
    by_size = sorted(candidates.experts, key=source.resolution_of)
    embedded = {expert_key(e): source.features(e) for e in by_size}
    feats = {expert_key(e): embedded[expert_key(e)] for e in candidates.experts}
  labels = next(iter(feats.values())).labels if feats else None
  upstream_probs = domain_probs = None
  domain_names = []
  if ("upstream_probs" in required and candidates.baseline is not None
      and candidates.baseline.has_logits):  # published baselines export features only
    base_logits = source.logits(candidates.baseline)
    labels = base_logits.labels if labels is None else labels
    upstream_probs = (_sigmoid if candidates.baseline.metadata.multi_label else _softmax)(
        base_logits.features.astype(np.float64))
    upstream_probs = upstream_probs / upstream_probs.sum(axis=1, keepdims=True)
  if "domain_probs" in required and candidates.epn is not None:
    # The EPN is multi-label (domains overlap); its per-domain sigmoids, normalised over domains,
    # give the p(expert | image) that domain prediction averages in log space.
    domain_probs = _sigmoid(source.logits(candidates.epn).features.astype(np.float64))
    domain_probs = domain_probs / domain_probs.sum(axis=1, keepdims=True)
    domain_names = candidates.epn.metadata.logit_names or []
  seconds["features"] = time.perf_counter() - start

  scores = {}
  for proxy in registered:
    start = time.perf_counter()
    scores[proxy.name] = {}
    options = {"seed": seed} if "seed" in proxy.options else {}
    for expert in candidates.experts:
      key = expert_key(expert)
      available = _available(proxy, expert, feats.get(key), labels, upstream_probs, domain_probs,
                             domain_names, candidates)
      if all(available.get(field) is not None for field in proxy.requires):
        inputs = proxies_lib.ProxyInputs(**{f: available[f] for f in proxy.requires})
        scores[proxy.name][key] = proxies_lib.score(proxy.name, inputs, **options)
    seconds[proxy.name] = time.perf_counter() - start
  return scores, seconds


def _available(proxy, expert, feats, labels, upstream_probs, domain_probs, domain_names,
               candidates):
  """Every `ProxyInputs` field this run has for `expert` (None where it has none)."""
  prior = expert.metadata.label_prior
  node = expert.metadata.node
  own_head = expert is candidates.baseline  # the only scored expert with an upstream head
  return {
      "features": None if feats is None else feats.features,
      "labels": labels if feats is None else feats.labels,
      "upstream_probs": upstream_probs if (own_head or not proxy.own_head) else None,
      "prior": None if prior is None else np.asarray(prior),
      "domain_probs": domain_probs if node in domain_names else None,
      "expert_index": domain_names.index(node) if node in domain_names else None,
      "expert": expert_key(expert),
  }


def best(scores):
  """The top expert of one proxy's `{expert: score}` (ties to the first name); None if empty."""
  ranking = proxies_lib.rank(scores)
  return ranking[0][0] if ranking else None
