"""Read and write BiT `.npz` checkpoints (e.g. `BiT-M-R50x1.npz`) for `ResNetV2` models.

Checkpoint names are the model's variable paths below the backbone, prefixed `resnet/`, e.g.
`resnet/block1/unit01/a/group_norm/gamma`; the head is stored as BiT stores it, a 1x1 conv
`resnet/head/conv2d/{kernel,bias}` with kernel shape `[1, 1, features, classes]`.
"""
import io

import numpy as np
import tensorflow as tf

from tfexperts import fileio

CHECKPOINT_ROOT = "resnet"
_KERAS_HEAD = "head/"
_BIT_HEAD = "head/conv2d/"


def _relative_path(model, variable):
  """Path of `variable` below `model`'s own scope, however deeply `model` itself is nested."""
  parts = variable.path.split("/")
  if model.name not in parts[:-1]:
    raise ValueError(f"Variable {variable.path!r} is not inside model {model.name!r}.")
  return "/".join(parts[parts.index(model.name) + 1:])


def checkpoint_variables(model):
  """Maps each BiT checkpoint name to the model variable it holds.

  Takes a built `ResNetV2`; returns `{name: keras.Variable}` in the model's variable order.
  """
  if not model.built:
    raise ValueError(f"Model {model.name!r} is not built; call it on images or use create_model.")
  names = {}
  for variable in model.weights:
    rel = _relative_path(model, variable)
    if rel.startswith(_KERAS_HEAD):
      rel = _BIT_HEAD + rel[len(_KERAS_HEAD):]
    names[f"{CHECKPOINT_ROOT}/{rel}"] = variable
  return names


def _to_checkpoint_layout(name, value):
  if name == f"{CHECKPOINT_ROOT}/{_BIT_HEAD}kernel" and value.ndim == 2:
    return value[None, None]
  return value


def _matches(name, patterns):
  return any(name == p or name.startswith(p.rstrip("/") + "/") for p in patterns)


def load_npz(model, path, skip=()):
  """Loads a BiT `.npz` checkpoint into `model`, strictly.

  Args:
    model: a built `ResNetV2`.
    path: local or `gs://` path of the `.npz` file.
    skip: checkpoint names or name prefixes to leave out on both sides, e.g. `("resnet/head",)`
      when the class count differs from the checkpoint's.

  Returns:
    The sorted list of checkpoint names that were loaded.

  Raises:
    ValueError naming the keys when the checkpoint lacks a model variable or has a key the model
    does not, or naming the key and both shapes when a shape differs.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    arrays = dict(np.load(io.BytesIO(f.read()), allow_pickle=False))
  variables = checkpoint_variables(model)
  wanted = {n for n in variables if not _matches(n, skip)}
  present = {n for n in arrays if not _matches(n, skip)}
  missing, unexpected = sorted(wanted - present), sorted(present - wanted)
  if missing or unexpected:
    raise ValueError(
        f"Checkpoint {path!r} does not match model {model.name!r}: missing keys {missing}, "
        f"unexpected keys {unexpected}. Pass skip=[...] with the names or prefixes to leave out.")
  values = {}
  for name in sorted(wanted):  # Check every shape before assigning, so a failure changes nothing.
    target_shape = tuple(variables[name].shape)
    value = np.asarray(arrays[name])
    if value.shape != target_shape and name.endswith(_BIT_HEAD + "kernel") and (
        value.size == np.prod(target_shape)):
      value = value.reshape(target_shape)
    if value.shape != target_shape:
      raise ValueError(f"Checkpoint {path!r} key {name!r} has shape {value.shape}, the model "
                       f"expects {target_shape}. Pass skip=[...] to leave it out.")
    values[name] = value
  for name, value in values.items():
    variables[name].assign(value.astype(variables[name].dtype))
  return sorted(wanted)


def save_npz(model, path):
  """Writes `model`'s weights as a BiT `.npz` at `path` (temp file, then rename).

  Takes a built `ResNetV2` and a local or `gs://` path; returns the sorted list of names written.
  """
  arrays = {name: _to_checkpoint_layout(name, np.asarray(v.numpy()))
            for name, v in checkpoint_variables(model).items()}
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  fileio.write_bytes_atomic(path, buffer.getvalue())
  return sorted(arrays)
