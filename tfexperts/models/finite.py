"""Finite-weight checks: a diverged model (NaN or infinite weights) is never saved or exported."""
import tensorflow as tf

from tfexperts import errors


def nonfinite_weights(model):
  """Paths of the floating-point weights of Keras `model` holding NaN or inf (empty: all finite)."""
  bad = []
  for variable in model.weights:
    value = tf.convert_to_tensor(variable)
    if value.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(value))):
      bad.append(getattr(variable, "path", variable.name))
  return bad


def check_finite(model, name, hint=""):
  """Raises `errors.NonFiniteModelError` naming model `name` when a weight of `model` is NaN or
  infinite (with `hint`, a sentence saying what to do, appended); returns `model` otherwise."""
  bad = nonfinite_weights(model)
  if bad:
    raise errors.NonFiniteModelError(
        f"Model {name!r} has non-finite (NaN or infinite) weights in {len(bad)} of "
        f"{len(model.weights)} variables (e.g. {bad[0]!r}): its training diverged.{hint}")
  return model
