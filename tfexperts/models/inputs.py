"""The image input contract: float images `[b, h, w, 3]` with values in [0, 1].

`prepare(images)` is called where images enter a model (the BiT model's root, the hub loader's
`embed`, the fine-tuning model). It converts uint8 images (always [0, 255]) to float32 / 255,
rejects other integer dtypes, and checks float images: values beyond [0, 1] by more than
`TOLERANCE` are an error saying whether they look like [0, 255] (divide by 255) or [-1, 1]
(use (x + 1) / 2).

The check looks at every `STRIDE`-th row and column of every image (1/16 of the pixels), so it
costs far less than a pass over the batch: a wrong value convention shows on every part of an
image, while a lone out-of-range pixel is not what it is for. Eagerly it raises `UserError`; in a
graph (tf.function, an exported module's signatures) it is a `tf.debugging.Assert` failing with
InvalidArgumentError. XLA compiles assertions to no-ops, so under `jit_compile` only the eager
entry points check.
"""
import keras
import tensorflow as tf

from tfexperts.errors import UserError

TOLERANCE = 0.05
STRIDE = 4
_HOW = ("Values up to 255 look like [0, 255] images: divide by 255. Values down to -1 look like "
        "[-1, 1] images: use (x + 1) / 2.")


def describe(low, high):
  """The contract error text for float images whose sampled values span [`low`, `high`]."""
  if low >= -TOLERANCE and high <= 255.0 + TOLERANCE:
    guess = "they look like [0, 255] images: divide them by 255 (or pass uint8 images as they are)"
  elif low >= -1.0 - TOLERANCE and high <= 1.0 + TOLERANCE:
    guess = "they look like [-1, 1] images: map them with (x + 1) / 2"
  else:
    guess = "rescale them to [0, 1]"
  return (f"Images must be floats in [0, 1] (tolerance {TOLERANCE}); these hold values in "
          f"[{low:.4g}, {high:.4g}]: {guess}.")


def prepare(images):
  """`images` in the model's input convention, checked; see the module docstring.

  Takes a `[b, h, w, 3]` tensor or array: uint8 (converted to float32 / 255), or float. Returns a
  tensor (float images are returned with their own dtype). Raises `UserError` for other dtypes
  and, eagerly, for float values outside [0, 1].
  """
  if isinstance(images, keras.KerasTensor):  # symbolic build: nothing to check
    return keras.ops.cast(images, "float32") / 255.0 if images.dtype == "uint8" else images
  images = tf.convert_to_tensor(images)
  if images.dtype == tf.uint8:
    return tf.cast(images, tf.float32) / 255.0
  if not images.dtype.is_floating:
    raise UserError(f"Images must be float32 in [0, 1] (or uint8 in [0, 255]). Received dtype "
                    f"{images.dtype.name}: convert with tf.cast(images, tf.float32) / 255 for "
                    "[0, 255] values.")
  if images.shape.rank != 4:
    return images  # the model reports the shape error
  sample = tf.cast(images[:, ::STRIDE, ::STRIDE, :], tf.float32)
  low, high = tf.reduce_min(sample), tf.reduce_max(sample)
  ok = tf.logical_and(low >= -TOLERANCE, high <= 1.0 + TOLERANCE)
  if tf.executing_eagerly():
    if tf.size(sample) > 0 and not bool(ok):
      raise UserError(describe(float(low), float(high)))
    return images
  if isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy):
    return images  # XLA drops assertions anyway, and their string data has no place on a TPU
  check = tf.debugging.Assert(
      tf.logical_or(ok, tf.equal(tf.size(sample), 0)),
      [f"Images must be floats in [0, 1] (tolerance {TOLERANCE}); sampled min and max:", low,
       high, _HOW], name="image_contract")
  with tf.control_dependencies([check]):
    return tf.identity(images)

