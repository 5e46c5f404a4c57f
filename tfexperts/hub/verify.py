"""Checks that a written hub module computes what the Keras model computes.

Every export reloads the module with `tf.saved_model.load` and compares, on a few fixed random
images, `__call__` (training False and True), `serve`, `train`, `serving_default` and, when
exported, `logits` with the Keras model's outputs. The tolerance is relative to the scale of the
outputs: `max |module - keras| <= TOLERANCE * max(1, max |keras|)`. Eager Keras and the saved graph
differ only by float32 rounding (oneDNN/grappler reorder sums): about 2e-6 of the feature scale for
the tiny test model, more for deeper, wider ones, so 1e-4 flags real differences (a wrong weight, a
missing expert) and never rounding.
"""
import numpy as np
import tensorflow as tf

from tfexperts.hub import module as module_lib

TOLERANCE = 1e-4
NUM_IMAGES = 3
MAX_BATCH = 8


class VerificationError(RuntimeError):
  """A reloaded module's outputs differ from the Keras model's (or lack an endpoint)."""


def check_images(resolution, count=NUM_IMAGES, seed=0):
  """Fixed random float32 images `[count, resolution, resolution, 3]` in [0, 1]."""
  rng = np.random.default_rng(seed)
  return rng.uniform(size=(count, resolution, resolution, 3)).astype("float32")


def _compare(what, got, want, where):
  got, want = np.asarray(got), np.asarray(want)
  if got.shape != want.shape:
    raise VerificationError(f"{where}: {what} has shape {got.shape}, the Keras model gives "
                            f"{want.shape}.")
  if got.dtype != np.float32:
    raise VerificationError(f"{where}: {what} has dtype {got.dtype}, expected float32.")
  scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
  diff = float(np.abs(got - want).max()) if want.size else 0.0
  if not diff <= TOLERANCE * scale:  # `not <=` also catches NaN
    raise VerificationError(f"{where}: {what} differs from the Keras model by {diff:.3g} "
                            f"(allowed {TOLERANCE:g} x output scale {scale:.3g}).")
  return diff


def _batches(images, expert_ids):
  for start in range(0, len(images), MAX_BATCH):
    end = start + MAX_BATCH
    yield images[start:end], None if expert_ids is None else expert_ids[start:end]


def compare(loaded, model, images, expert_ids=None, with_logits=False, where="module",
            call_output=module_lib.PRE_LOGITS):
  """Compares every endpoint of a reloaded module with the Keras `model` on `images`.

  Args:
    loaded: the result of `tf.saved_model.load` (or `hub.load`) on the module.
    model: the Keras model the module was written from.
    images: float32 `[n, h, w, 3]` in [0, 1].
    expert_ids: `[n]` int32 for bank modules, else None.
    with_logits: whether the module exports `logits`.
    where: name of the module for messages.
    call_output: the model output `__call__`, `serve` and `train` return (`pre_logits`, or
      `logits` for a task module).

  Returns:
    The largest absolute difference seen (float). Raises `VerificationError` on a difference
    above tolerance, a wrong shape or dtype, or a missing endpoint.
  """
  names = ["serve", "train"] + (["logits"] if with_logits else [])
  missing = [n for n in names if not hasattr(loaded, n)]
  if missing or "serving_default" not in loaded.signatures:
    raise VerificationError(f"{where}: endpoints {missing + ['serving_default']} missing "
                            f"(has signatures {sorted(loaded.signatures)}).")
  serving = loaded.signatures["serving_default"]
  worst = 0.0
  for batch, ids in _batches(images, expert_ids):
    args = (batch,) if ids is None else (batch, ids)
    want = model(*args)
    want_features = want[module_lib.PRE_LOGITS].numpy()
    want_call = want[call_output].numpy()
    inputs = {module_lib.IMAGES: tf.constant(batch)}
    if ids is not None:
      inputs[module_lib.EXPERT_IDS] = tf.constant(ids)
    signature_out = serving(**inputs)
    got = {"__call__": loaded(*args), "__call__(training=True)": loaded(*args, training=True),
           "serve": loaded.serve(*args), "train": loaded.train(*args)}
    for what, value in got.items():
      worst = max(worst, _compare(what, value, want_call, where))
    worst = max(worst, _compare("serving_default['pre_logits']",
                                signature_out[module_lib.PRE_LOGITS], want_features, where))
    if with_logits:
      want_logits = want[module_lib.LOGITS].numpy()
      worst = max(worst, _compare("logits", loaded.logits(*args), want_logits, where))
      worst = max(worst, _compare("serving_default['logits']",
                                  signature_out[module_lib.LOGITS], want_logits, where))
  return worst


def compare_models(got, want, images, expert_ids=None, where="model"):
  """Compares two Keras models' outputs (pre-logits; logits when both have them) on `images`.

  For checking an export copy against its source before anything is written. Returns the largest
  difference; raises `VerificationError` above tolerance.
  """
  worst = 0.0
  for batch, ids in _batches(images, expert_ids):
    args = (batch,) if ids is None else (batch, ids)
    got_out, want_out = got(*args), want(*args)
    for key in sorted(set(got_out) & set(want_out)):
      worst = max(worst, _compare(key, got_out[key].numpy(), want_out[key].numpy(), where))
  return worst
