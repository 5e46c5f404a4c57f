"""Embedding a task's images with an expert, with a progress line and an on-disk cache.

`embed` runs a model over a batched `tf.data.Dataset` of `(images, labels)` (images float32
`[b, h, w, 3]` in [0, 1]) and returns numpy features and labels; the model is any callable mapping
images to `[b, d]` features (a `hub.load(handle)` module, a Keras model), or to a dict holding
them under "pre_logits" (as `tfexperts.models.bit.ResNetV2`). `cached_features` adds the
`FeatureCache`: it builds the model and the dataset only on a miss.
"""
import collections
import dataclasses
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tfexperts import replicated
from tfexperts.errors import UserError

DEFAULT_REPLICATED_BATCH = 64  # global batch under a strategy when the dataset's is not static
Features = collections.namedtuple("Features", ["features", "labels", "images_embedded"])
Features.__doc__ = """Embedded dataset: float32 `[n, d]` features, `[n]` labels, and how many
images were run through the model for it (0 when read from the cache)."""


@dataclasses.dataclass
class EmbedStats:
  """Running counters across calls: images run through a model, cache hits and misses."""
  images_embedded: int = 0
  cache_hits: int = 0
  cache_misses: int = 0


def _pre_logits(outputs):
  if isinstance(outputs, dict):
    if "pre_logits" not in outputs:
      raise ValueError("A model returning a dict must hold the features under 'pre_logits'. "
                       f"Received keys: {sorted(outputs)}")
    outputs = outputs["pre_logits"]
  return tf.cast(tf.reshape(outputs, [tf.shape(outputs)[0], -1]), tf.float32)


class _Progress:
  """Logs `images/s` and ETA at most every `every` seconds, and once at the end."""

  def __init__(self, name, total, every):
    self.name, self.total, self.every = name, total, every
    self.start = self.last = time.monotonic()
    self.done = 0

  def line(self):
    elapsed = max(time.monotonic() - self.start, 1e-9)
    rate = self.done / elapsed
    text = f"{self.name}: embedded {self.done}"
    if self.total:
      text += f"/{self.total}"
    text += f" images, {rate:.1f} images/s"
    if self.total and rate > 0 and self.done < self.total:
      text += f", ETA {(self.total - self.done) / rate:.0f}s"
    return text

  def update(self, count):
    self.done += count
    now = time.monotonic()
    if self.every is not None and now - self.last >= self.every:
      self.last = now
      logging.info("%s", self.line())

  def finish(self):
    logging.info("%s (done in %.1fs)", self.line(), time.monotonic() - self.start)


def _single_replica(value):
  return (value,)


class _CompiledStep:
  """`fn(images)` as an XLA-compiled tf.function for one fixed batch shape, with fallbacks.

  Every batch is padded (zero images appended) to the size of the first one, so XLA compiles the
  model once, and the padded rows are dropped from the result. When XLA cannot compile the model
  (an op without an XLA kernel) the step logs why and runs as a plain tf.function from then on.
  """

  def __init__(self, fn, jit_compile, runs_graph=False):
    # `runs_graph`: `fn` already calls a tf.function. Wrapping it in another would inline that
    # graph into a new function, optimised again (seconds for an R50) at every `embed` call.
    self.plain = fn if runs_graph else tf.function(fn, reduce_retracing=True, autograph=False)
    self.compiled = tf.function(fn, jit_compile=True, autograph=False) if jit_compile else None
    self.batch_size = None

  def __call__(self, images):
    if self.compiled is None:
      return self.plain(images)
    count = int(images.shape[0]) if images.shape[0] is not None else int(tf.shape(images)[0])
    if self.batch_size is None:
      self.batch_size = count
    if count > self.batch_size:  # only the last batch may be smaller; a larger one: recompile
      self.batch_size = count
    padded = images
    if count < self.batch_size:
      padded = tf.pad(images, [[0, self.batch_size - count], [0, 0], [0, 0], [0, 0]])
    try:
      return self.compiled(padded)[:count]
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.InternalError) as e:
      logging.warning("XLA could not compile the model (%s: %s); embedding without XLA.",
                      type(e).__name__, str(e).splitlines()[0] if str(e) else "")
      self.compiled = None
      return self.plain(images)


def _check_dataset(dataset):
  if not isinstance(dataset, tf.data.Dataset):
    raise ValueError(f"`dataset` must be a tf.data.Dataset of (images, labels) batches. "
                     f"Received: {type(dataset).__name__}")
  spec = dataset.element_spec
  if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0].shape.rank == 4):
    raise ValueError("`dataset` must yield (images [b, h, w, 3], labels [b]) batches. "
                     f"Received element_spec: {spec}")


def embed(model, dataset, strategy=None, num_images=None, log_every_seconds=10.0, stats=None,
          name="embed", jit_compile=False):
  """Features of every image of `dataset`, in dataset order.

  Args:
    model: callable, images `[b, h, w, 3]` float32 in [0, 1] -> `[b, d]` (or {"pre_logits": ...}).
      A tf.function, or a callable with `runs_graph = True`, is called as it is (not traced
      into a tf.function of the feature path's).
    dataset: batched `tf.data.Dataset` of `(images, labels)`.
    strategy: optional `tf.distribute.Strategy`; images are split over its replicas (see
      `tfexperts.replicated`: full global batches of the dataset's batch size, the last
      padded, every image embedded once, results in dataset order on every worker). The model's
      variables should be created under `strategy.scope()`.
    num_images: total image count, if known, for the ETA in the progress line.
    log_every_seconds: progress line interval (absl logging, INFO); None logs only the summary.
    stats: optional `EmbedStats` whose `images_embedded` is increased.
    name: prefix of the progress line.
    jit_compile: without a strategy, run the model XLA-compiled for one fixed batch shape (the
      last, smaller batch is padded with zero images, which the model then also sees; their
      features are dropped), falling back to a plain tf.function when XLA cannot compile it.
      Off by default: compiling an R50 takes tens of seconds per module on a CPU, more than it
      saves on a VTAB-1k task (bench/forward.py prints both costs).

  Returns:
    `(features, labels)`: float32 `[n, d]` and `[n]` numpy arrays.
  """
  _check_dataset(dataset)
  progress = _Progress(name, num_images, log_every_seconds)

  def replica_step(images):
    return _pre_logits(model(images))

  if strategy is not None:
    return _embed_replicated(strategy, replica_step, dataset, progress, stats)
  # No autograph (nothing to convert): errors raised while tracing, e.g. a module's UserError
  # for a wrong image size, reach the caller as they are rather than as a StagingError.
  step = _CompiledStep(replica_step, jit_compile,
                       isinstance(model, tf.types.experimental.PolymorphicFunction)
                       or getattr(model, "runs_graph", False))
  batches, local = dataset.prefetch(tf.data.AUTOTUNE), _single_replica
  features, labels = [], []
  for images, batch_labels in batches:
    batch_features = [f.numpy() for f in local(step(images))]
    batch_labels = [np.asarray(t) for t in local(batch_labels)]
    count = sum(len(f) for f in batch_features)
    features.extend(batch_features)
    labels.extend(batch_labels)
    progress.update(count)
    if stats is not None:
      stats.images_embedded += count
  progress.finish()
  if not features:
    raise ValueError("`dataset` yielded no images.")
  return np.concatenate(features).astype(np.float32), np.concatenate(labels)


def check_finite(features, key):
  """Returns `features`; `UserError` naming the module when any value is NaN or infinite."""
  bad = ~np.isfinite(features).all(axis=1)
  if bad.any():
    raise UserError(f"Module {key.handle!r} gave NaN or infinite features for {int(bad.sum())} of "
                    f"{len(features)} images of {key.task}/{key.split} (first at image "
                    f"{int(np.argmax(bad))}); its scores would be meaningless. Check the module "
                    "(e.g. load it and embed a few images) or leave it out of --experts.")
  return features


def _embed_replicated(strategy, replica_step, dataset, progress, stats):
  def on_batch(count):
    progress.update(count)
    if stats is not None:
      stats.images_embedded += count

  batch_size = dataset.element_spec[0].shape[0] or DEFAULT_REPLICATED_BATCH
  features, labels = replicated.ordered_outputs(
      strategy, lambda example: (replica_step(example[0]), example[1]), dataset.unbatch(),
      batch_size, on_batch=on_batch)
  progress.finish()
  return features.astype(np.float32), labels


def cached_features(cache, key, make_model, make_dataset, strategy=None, num_images=None,
                    log_every_seconds=10.0, stats=None):
  """Features for `key` from `cache`, or embedded (then cached) on a miss.

  Args:
    cache: a `FeatureCache`, or None to always embed.
    key: the `CacheKey` (module content, task, split, resolution, preprocessing) of the features.
    make_model: zero-argument callable returning the model (e.g. `lambda: hub.load(handle)`);
      called only on a miss, so a warm cache loads no model.
    make_dataset: zero-argument callable returning the batched `(images, labels)` dataset; called
      only on a miss.
    strategy, num_images, log_every_seconds: as in `embed`.
    stats: optional `EmbedStats` updated with images embedded and cache hits/misses.

  Returns:
    `Features(features, labels, images_embedded)`.
  """
  if cache is not None:
    hit = cache.load(key)
    if hit is not None:
      if stats is not None:
        stats.cache_hits += 1
      logging.info("Feature cache hit for %s/%s/%s (%s).", key.task, key.split, key.handle,
                   cache.path(key))
      return Features(check_finite(hit[0], key), hit[1], 0)
    if stats is not None:
      stats.cache_misses += 1
  features, labels = embed(make_model(), make_dataset(), strategy=strategy, num_images=num_images,
                           log_every_seconds=log_every_seconds, stats=stats,
                           name=f"{key.task}/{key.split} {key.handle}")
  check_finite(features, key)  # never cached: a fixed module then embeds again
  if cache is not None:
    cache.save(key, features, labels)
  return Features(features, labels, len(features))
