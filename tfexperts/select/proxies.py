"""Expert-selection proxies behind one interface: `score(name, ProxyInputs) -> float`, higher wins.

Registered proxies (`PROXIES`) and the `ProxyInputs` fields each one needs:
  knn             features, labels          leave-one-out kNN accuracy (the paper's choice)
  label_matching  upstream_probs, prior     -KL(task's mean upstream softmax || expert's prior)
  domain          domain_probs, expert_index  mean log p(expert | image) from an EPN
  random          expert                    seeded uniform score (baseline)
  logme           features, labels          LogME evidence (You et al. 2021)
  leep            upstream_probs, labels    LEEP (Nguyen et al. 2020) of the expert's upstream head
  hscore          features, labels          H-score (Bao et al. 2019)
  linear_probe    features, labels          logistic-regression holdout accuracy
Proxy options (e.g. `k` for knn, `seed` for random) are keyword arguments of `score`.
"""
import dataclasses
import inspect
import math
import zlib
from typing import Callable, Optional

import numpy as np

from tfexperts import errors
from tfexperts.select import hscore as hscore_lib
from tfexperts.select import knn as knn_lib
from tfexperts.select import leep as leep_lib
from tfexperts.select import linear_probe as linear_probe_lib
from tfexperts.select import logme as logme_lib
from tfexperts.select import matching


@dataclasses.dataclass(frozen=True)
class ProxyInputs:
  """What a proxy may need to score one expert on one task; proxies read only their fields.

  Attributes:
    features: `[n, d]` the expert's features of the task's (training) images.
    labels: `[n]` the task's labels of those images.
    upstream_probs: `[n, K]` distribution over upstream labels on the task's images, rows
      summing to 1 (a softmax head's probabilities, or a multi-label head's sigmoids normalised
      over labels). For `label_matching` from the generic upstream model (the same for every
      expert); for `leep` from the scored expert's own upstream head.
    prior: `[K]` the expert's empirical upstream label prior (frequencies or counts).
    domain_probs: `[n, E]` the expert prediction network's per-domain sigmoids (it is multi-label:
      domains overlap), normalised over the E expert domains.
    expert_index: the scored expert's column in `domain_probs`.
    expert: the scored expert's name (seeds the `random` proxy).
  """
  features: Optional[np.ndarray] = None
  labels: Optional[np.ndarray] = None
  upstream_probs: Optional[np.ndarray] = None
  prior: Optional[np.ndarray] = None
  domain_probs: Optional[np.ndarray] = None
  expert_index: Optional[int] = None
  expert: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Proxy:
  """A registered proxy: `fn(inputs, **options) -> float` reading the fields in `requires`.

  `own_head`: its `upstream_probs` come from the scored expert's own upstream head (so only
  experts with a head, i.e. the baseline, can be scored), not from the generic baseline's.
  """
  name: str
  fn: Callable[..., float]
  requires: tuple
  description: str
  own_head: bool = False

  @property
  def options(self):
    """Names of the keyword options `fn` accepts besides `inputs`."""
    return tuple(p for p in inspect.signature(self.fn).parameters if p != "inputs")


PROXIES = {}


def register(name, requires, description, own_head=False):
  """Decorator registering `fn(inputs, **options) -> float` as proxy `name`; returns `fn`.

  `requires` lists the `ProxyInputs` fields `fn` reads (a scorer fills exactly those);
  `own_head` is `Proxy.own_head`.
  """
  fields = {f.name for f in dataclasses.fields(ProxyInputs)}
  unknown = sorted(set(requires) - fields)
  if unknown:
    raise ValueError(f"Proxy {name!r} requires unknown ProxyInputs fields {unknown}. "
                     f"Valid fields: {sorted(fields)}")

  def decorator(fn):
    if name in PROXIES:
      raise ValueError(f"Proxy {name!r} is already registered.")
    PROXIES[name] = Proxy(name, fn, tuple(requires), description, own_head)
    return fn
  return decorator


def get(name):
  """Returns the registered `Proxy` called `name`; raises ValueError listing the known names."""
  if name not in PROXIES:
    raise ValueError(f"Unknown proxy {name!r}. Known proxies: {sorted(PROXIES)}."
                     f"{errors.did_you_mean(name, PROXIES)}")
  return PROXIES[name]


def score(name, inputs, **options):
  """Scores one expert with proxy `name` on `inputs` (a `ProxyInputs`); returns a float.

  Higher is better for every proxy. Raises ValueError for an unknown proxy or option, or when a
  field the proxy needs is None (the message names the proxy and the field).
  """
  proxy = get(name)
  if not isinstance(inputs, ProxyInputs):
    raise ValueError(f"`inputs` must be a ProxyInputs. Received: {type(inputs).__name__}")
  missing = [f for f in proxy.requires if getattr(inputs, f) is None]
  if missing:
    raise ValueError(f"Proxy {name!r} needs ProxyInputs.{', ProxyInputs.'.join(missing)}, which "
                     f"{'is' if len(missing) == 1 else 'are'} None. It requires: "
                     f"{list(proxy.requires)}")
  unknown = sorted(set(options) - set(proxy.options))
  if unknown:
    raise ValueError(f"Proxy {name!r} got unknown options {unknown}. Valid options: "
                     f"{list(proxy.options)}")
  return float(proxy.fn(inputs, **options))


def rank(scores):
  """Sorts `{expert: score}` best first; ties by expert name, NaN scores last.

  Returns a list of `(expert, score)` pairs.
  """
  def key(item):
    expert, value = item
    return (math.isnan(value), -value if not math.isnan(value) else 0.0, str(expert))
  return sorted(((e, float(s)) for e, s in scores.items()), key=key)


@register("knn", ("features", "labels"), "leave-one-out kNN accuracy (paper's choice)")
def _knn(inputs, k=1, metric="euclidean", max_block_bytes=knn_lib.DEFAULT_MAX_BLOCK_BYTES):
  return knn_lib.loo_accuracy(inputs.features, inputs.labels, k=k, metric=metric,
                              max_block_bytes=max_block_bytes)


@register("label_matching", ("upstream_probs", "prior"),
          "-KL(task's mean upstream softmax || expert's upstream label prior)")
def _label_matching(inputs, smoothing=matching.DEFAULT_SMOOTHING):
  return matching.label_matching_score(inputs.upstream_probs, inputs.prior, smoothing=smoothing)


@register("domain", ("domain_probs", "expert_index"),
          "mean log p(expert | image) from an expert prediction network")
def _domain(inputs, floor=matching.DEFAULT_FLOOR):
  return matching.domain_prediction_score(inputs.domain_probs, inputs.expert_index, floor=floor)


def random_score(expert, seed=0):
  """Uniform [0, 1) score for `expert` (a name) from an RNG seeded by (seed, crc32(name)).

  The same seed and name always give the same score, independent of which other experts are
  scored or in which order.
  """
  if not isinstance(expert, str):
    raise ValueError(f"`expert` must be a string name. Received: {expert!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
  return float(np.random.default_rng([int(seed), zlib.crc32(expert.encode("utf-8"))]).random())


@register("random", ("expert",), "seeded random score (baseline)")
def _random(inputs, seed=0):
  return random_score(inputs.expert, seed=seed)


@register("logme", ("features", "labels"), "LogME evidence (You et al. 2021)")
def _logme(inputs):
  return logme_lib.logme(inputs.features, inputs.labels)


@register("leep", ("upstream_probs", "labels"), "LEEP of the expert's upstream head",
          own_head=True)
def _leep(inputs):
  return leep_lib.leep(inputs.upstream_probs, inputs.labels)


@register("hscore", ("features", "labels"), "H-score (Bao et al. 2019)")
def _hscore(inputs):
  return hscore_lib.hscore(inputs.features, inputs.labels)


@register("linear_probe", ("features", "labels"), "logistic-regression holdout accuracy")
def _linear_probe(inputs, holdout_fraction=0.2, seed=0, c=1.0, max_iter=1000):
  return linear_probe_lib.linear_probe_accuracy(inputs.features, inputs.labels,
                                                holdout_fraction=holdout_fraction, seed=seed,
                                                c=c, max_iter=max_iter)
