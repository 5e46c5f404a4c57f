"""Features of tfexperts' own exported experts in-process, without loading their SavedModel graphs.

`hub.load` of an R50 module restores every traced function (two 4,600-node graphs for
`__call__`, plus the endpoints), and its first call optimises the graph: seconds per module, as
much as embedding a few hundred images. A module written by `tfexperts.hub.export` describes its
model in its metadata (`architecture`, `outputs`) and saves its variables in model order
(`variables/<i>` in its checkpoint), so the same features come from that model rebuilt
(`models.architecture.rebuild`) with the module's variables read from the checkpoint (a fraction
of a second).

Trust, but verify: export stores the reloaded module's own features of its check images
(`assets/check_features.npz`, `write_check_features`). A rebuilt model must reproduce them within
`verify.TOLERANCE` of their scale, else `NativeRunner.load` returns None and the caller loads the
module with `hub.load` as before. Modules without that asset (older exports, published and
third-party modules), banks, handles with options (`?range=`) and modules whose checkpoint does not
fit the rebuilt model take that path too.

`NativeRunner` is for inference and keeps one model and one traced function per architecture:
loading the next expert of the same architecture assigns its weights to that model (so the callable
returned for the previous expert then computes the new expert's features), and K experts trace
once. Kernels are weight-standardized once on load, not at every call.
"""
import io
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tfexperts import fileio
from tfexperts import precision as precision_lib
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import verify
from tfexperts.models import architecture as architecture_lib
from tfexperts.models import layers

CHECK_ASSET = "check_features.npz"
_PLAIN_KINDS = ("baseline", "full", "adapter", "patch", "epn")


def check_asset_path(module_dir):
  """Path of the check-features asset inside a module directory."""
  return os.path.join(module_dir, metadata_lib.ASSETS_DIR, CHECK_ASSET)


def write_check_features(module_dir, resolution, count, seed, features):
  """Writes a module's own `[count, d]` features of `verify.check_images(resolution, count, seed)`
  into its assets (atomically); returns the path."""
  buffer = io.BytesIO()
  np.savez(buffer, resolution=resolution, count=count, seed=seed,
           features=np.asarray(features, np.float32))
  return fileio.write_bytes_atomic(check_asset_path(module_dir), buffer.getvalue())


def read_check_features(module_dir):
  """The check-features asset of `module_dir` as a dict (`resolution`, `count`, `seed`,
  `features`), or None when the module has none."""
  return _read_check_features(module_dir)


def _read_check_features(module_dir):
  path = check_asset_path(module_dir)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "rb") as f:
    data = np.load(io.BytesIO(f.read()))
    return {key: data[key] for key in data.files}


def _architecture_key(metadata):
  """`(Architecture, num_classes)` of the model a plain tfexperts expert module holds (hashable:
  one slot per key), else None (no tfexperts metadata, a bank, or a patch bank)."""
  if metadata.is_absent or metadata.kind not in _PLAIN_KINDS or (
      metadata.architecture.patch_experts):
    return None
  return metadata.architecture, metadata.outputs.logits or 0


def may_run_natively(metadata):
  """True when `metadata` (a module's `ModuleMetadata`) describes a model `NativeRunner` can
  rebuild (the module must still verify when loaded)."""
  return _architecture_key(metadata) is not None


def _build(key, precision="float32"):
  """The model of `key` (`_architecture_key`) at `precision`, every layer trainable."""
  with precision_lib.policy_scope(precision):
    return architecture_lib.rebuild(*key)


class _Chunked:
  """Features of a batch as the concatenated features of its chunks of at most CHUNK images.

  bfloat16's fastest GroupNorm kernels run per example and need a static batch size
  (`layers.group_norm`): `fn` is traced per chunk shape, and chunks bound the size of its graph
  (a traced R50 holds ~50 GroupNorms per example). Called eagerly (`runs_graph`: the feature path
  does not wrap it in a tf.function of its own).
  """
  CHUNK = 16
  runs_graph = True

  def __init__(self, fn):
    self.fn = fn

  def __call__(self, images):
    images = tf.convert_to_tensor(images)
    count = int(images.shape[0])
    if count <= self.CHUNK:
      return self.fn(images)
    return tf.concat([self.fn(images[i:i + self.CHUNK]) for i in range(0, count, self.CHUNK)], 0)


class _Slot:
  """One architecture's model at one precision (kernels standardized on load) and its traced
  feature function."""

  def __init__(self, key, precision="float32"):
    self.model = _build(key, precision)
    self.model.trainable = False
    if precision == "float32":
      spec = tf.TensorSpec([None, None, None, 3], tf.float32)
      # One trace for every batch shape.
      self.features = tf.function(lambda images: self.model(images)["pre_logits"],
                                  input_signature=[spec], autograph=False)
    else:
      self.features = _Chunked(tf.function(lambda images: self.model(images)["pre_logits"],
                                           autograph=False))

  def assign(self, values):
    """Assigns checkpoint `values` (model order) to the variables, then standardizes the kernels
    once; False (nothing assigned) when they do not fit."""
    variables = self.model.variables
    if len(values) != len(variables) or any(
        tuple(v.shape) != tuple(value.shape) for v, value in zip(variables, values)):
      return False
    for variable, value in zip(variables, values):
      variable.assign(value)
    layers.freeze_standardization(self.model)
    return True


def _checkpoint_values(module_dir):
  """The module's variables in the order it lists them (`variables/<i>`), or None."""
  prefix = os.path.join(module_dir, tf.saved_model.VARIABLES_DIRECTORY,
                        tf.saved_model.VARIABLES_FILENAME)
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError):
    return None
  names = set(reader.get_variable_to_shape_map())
  values = []
  while f"variables/{len(values)}/.ATTRIBUTES/VARIABLE_VALUE" in names:
    values.append(reader.get_tensor(f"variables/{len(values)}/.ATTRIBUTES/VARIABLE_VALUE"))
  return values or None


class NativeRunner:
  """Loads tfexperts expert modules as in-process models (see the module docstring)."""

  def __init__(self):
    self._slots = {}

  def load(self, ref, precision="float32"):
    """A callable `images [b, h, w, 3] -> [b, d]` float32 features of the module of `ref` (an
    `ExpertRef` with a local location) computed at `precision` (`tfexperts.precision`), or None
    when it must be loaded with `hub.load` (also when its handle declares options).

    The module is verified at float32 (its check features); a reduced precision then runs a
    model of that precision with the same weights. The callable stays valid until this runner
    loads another module of the same architecture and precision.
    """
    module_dir, handle = ref.location, ref.handle
    key = _architecture_key(ref.metadata)
    if key is None or ref.has_options:
      return None
    check = _read_check_features(module_dir)
    values = _checkpoint_values(module_dir) if check is not None else None
    if values is None:
      return None
    if key not in self._slots:
      self._slots[key] = _Slot(key)
    slot = self._slots[key]
    if not slot.assign(values):
      logging.info("Module %s: checkpoint does not fit its metadata's architecture; loading "
                   "it with hub.load.", handle)
      return None
    images = verify.check_images(int(check["resolution"]), int(check["count"]),
                                 int(check["seed"]))
    got = slot.features(tf.constant(images)).numpy()
    want = check["features"]
    scale = max(1.0, float(np.abs(want).max()))
    if got.shape != want.shape or not float(np.abs(got - want).max()) <= verify.TOLERANCE * scale:
      logging.warning("Module %s: the model rebuilt from its metadata does not reproduce its "
                      "check features; loading it with hub.load.", handle)
      return None
    if precision_lib.check(precision) == "float32":
      return slot.features
    if (key, precision) not in self._slots:
      self._slots[key, precision] = _Slot(key, precision)
    reduced = self._slots[key, precision]
    reduced.assign(values)
    return reduced.features


def trainable_model(ref, precision):
  """The module of `ref` (an `ExpertRef`) rebuilt as a trainable Keras model computing at
  `precision` (float32 variables), or None when it does not run natively (see `NativeRunner`).

  Returns a built `bit.ResNetV2` (or adapter expert) whose call returns
  `{"pre_logits": float32 [b, d], ...}`, holding the module's weights (verified at float32 first).
  """
  values = _checkpoint_values(ref.location)
  if values is None or NativeRunner().load(ref) is None:
    return None
  model = _build(_architecture_key(ref.metadata), precision)
  for variable, value in zip(model.variables, values):
    variable.assign(value)
  return model
