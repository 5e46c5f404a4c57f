"""OpenVINO as an inference engine for CPU feature extraction (the optional `openvino` extra).

A SavedModel (a tfexperts module or a third-party one) is converted once with OpenVINO's
TensorFlow frontend (`convert_saved_model`: what `openvino.convert_model(module_dir)` does, without
its telemetry), its GroupNorm subgraphs are rewritten
into OpenVINO's GroupNormalization op (`hub.openvino_groupnorm`; R50x1 at 224 px, one quiet
run: float32 1.6x, bfloat16 1.24x faster), and the converted IR is cached under
`<cache_root>/openvino/<key>/`, the key being the module's content identity
(`hub.identity.of_directory`) plus the inference precision, so a re-exported module converts
again and a cache hit reads no TensorFlow graph at all. The IR is written into a temp directory
and renamed into place, so a cached entry is always complete.

Precision maps to OpenVINO's `INFERENCE_PRECISION_HINT` ("float32" -> f32, "bfloat16" -> bf16,
"float16" -> f16). It is always set: OpenVINO's CPU plugin otherwise picks bf16 by itself on
CPUs with AVX512_BF16 or AMX, which would silently change float32 features.

Every conversion is checked before it is cached or used: the float32 OpenVINO model must give a
tfexperts module's own stored check features (`assets/check_features.npz`), or, for other
modules, what TensorFlow's `hub.load` gives on two probe images, within `verify.TOLERANCE` of
their scale. A module OpenVINO cannot convert, or converts into something else (modules exported
before variables had unique graph names: their repeated names make OpenVINO read the wrong
weights or reject the module), gives None from `load`, with one printed line, and the caller
embeds it with TensorFlow as before.
"""
import hashlib
import json
import os
import shutil

import numpy as np

from tfexperts import lazy
from tfexperts.errors import UserError
from tfexperts.hub import third_party

# Light at import (no TensorFlow), so the binaries check --engine before loading anything heavy.
tf = lazy.LazyModule("tensorflow")
fileio = lazy.LazyModule("tfexperts.fileio")
hub_load = lazy.LazyModule("tfexperts.hub.load")
native = lazy.LazyModule("tfexperts.hub.native")
openvino_groupnorm = lazy.LazyModule("tfexperts.hub.openvino_groupnorm")
verify = lazy.LazyModule("tfexperts.hub.verify")
PROBE_RESOLUTION = 224

ENGINES = ("tensorflow", "openvino")
PRECISIONS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
INSTALL_HINT = "pip install tfexperts[openvino]"
CACHE_SUBDIR = "openvino"
KEY_FORMAT = "tfexperts.hub.openvino_engine/2"  # 2: GroupNorms fused
_IR_NAME = "model.xml"
_FEATURE_OUTPUTS = ("pre_logits",) + tuple(third_party.FEATURE_OUTPUTS)


def available():
  """True when the `openvino` package can be imported."""
  try:
    import openvino  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
  except ImportError:
    return False
  return True


def check_engine(engine):
  """Returns `engine` when it is valid and usable here; UserError naming it otherwise.

  "openvino" without the package installed is an error saying how to install it.
  """
  if engine not in ENGINES:
    raise UserError(f"Unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}.")
  if engine == "openvino" and not available():
    raise UserError(f"--engine=openvino needs OpenVINO, which is not installed: "
                    f"{INSTALL_HINT}")
  return engine


def check_precision(precision):
  """Returns `precision`; UserError naming it and the valid ones when it is not one of them."""
  if precision not in PRECISIONS:
    raise UserError(f"Unknown precision {precision!r}; valid precisions: "
                    f"{', '.join(PRECISIONS)}.")
  return precision


def _openvino():
  check_engine("openvino")
  import openvino  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  return openvino


def cache_key(ref, precision):
  """Hex digest naming the converted model of `ref` (an `ExpertRef`) at `precision` in the
  cache."""
  digest = hashlib.sha256(KEY_FORMAT.encode())
  digest.update(json.dumps({"module": ref.identity,
                            "precision": check_precision(precision),
                            "openvino": _openvino().__version__}, sort_keys=True).encode())
  return digest.hexdigest()[:32]


def _feature_output(model):
  """The OpenVINO output holding the features: one output, else the first feature name."""
  outputs = list(model.outputs)
  if len(outputs) == 1:
    return outputs[0]
  for name in _FEATURE_OUTPUTS:
    for output in outputs:
      if name in output.get_names():
        return output
  names = [sorted(o.get_names()) for o in outputs]
  raise ValueError(f"no feature output among {names}; expected one of {list(_FEATURE_OUTPUTS)}")


def _is_local(path):
  return "://" not in path


def _reference(ref, resolution):
  """`(images, features)` a correct conversion must reproduce (see the module docstring)."""
  stored = native.read_check_features(ref.location)
  if stored is not None:
    images = verify.check_images(int(stored["resolution"]), int(stored["count"]),
                                 int(stored["seed"]))
    return images, stored["features"]
  images = verify.check_images(resolution or PROBE_RESOLUTION, 2)
  return images, np.asarray(hub_load.load_expert(ref).embed(images))


def check_conversion(model, ref, resolution=None):
  """Raises `verify.VerificationError` when the float32 OpenVINO `model` does not compute the
  module's features (within `verify.TOLERANCE` of their scale); returns the max difference.
  Takes the model, the module's `ExpertRef` (its input range applies) and the probe size: modules
  without stored check features are probed at `resolution` (default 224) px."""
  images, want = _reference(ref, resolution)
  got = Embedder(model, "float32", ref.input_range).run(images)
  scale = max(1.0, float(np.abs(want).max()))
  diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
  if not diff <= verify.TOLERANCE * scale:
    raise verify.VerificationError(
        f"OpenVINO's model of {ref.handle!r} differs from the module by {diff:.3g} (tolerance "
        f"{verify.TOLERANCE * scale:.3g}; shapes {got.shape} vs {want.shape})")
  return diff


def convert_saved_model(module_dir):
  """The `openvino.Model` of the SavedModel in `module_dir` (a local directory), as saved.

  The steps `openvino.convert_model(module_dir)` runs for a SavedModel given no options (the
  TensorFlow frontend, then the same offline transformations: the same ops and weights), without
  its telemetry: `convert_model` sends anonymous usage events to Google Analytics unless the user
  opted out (about 150 per tiny module), and on this 2-core machine they took 6 of the 7 s it
  spent converting one.
  """
  from openvino import frontend  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  # What `openvino.tools.ovc` itself imports to transform a converted model (moc_emit_ir.py).
  from openvino import _offline_transformations as offline  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  tensorflow_frontend = frontend.FrontEndManager().load_by_framework("tf")
  model = tensorflow_frontend.convert(tensorflow_frontend.load(module_dir))
  offline.apply_moc_transformations(model, cf=False, smart_reshape=True)
  offline.compress_quantize_weights_transformation(model)
  offline.apply_fused_names_cleanup(model)
  return model


def _converted(ref, resolution):
  """The module of `ref` converted as saved, its GroupNorms fused, checked."""
  model = convert_saved_model(ref.location)
  openvino_groupnorm.fuse_group_norms(model)
  check_conversion(model, ref, resolution)
  return model


def convert(ref, cache_root=None, precision="float32", resolution=None):
  """The OpenVINO model (`openvino.Model`) of the SavedModel of `ref`, converted once.

  Args:
    ref: the module's `ExpertRef` (a local `location`; its `?range=` option is applied).
    cache_root: feature cache directory; the IR is cached under `<cache_root>/openvino/`. None
      (or a non-local path) converts without caching.
    precision: a key of `PRECISIONS`; part of the cache key.
    resolution: image size of the check when the module stores no check features.

  Returns:
    `openvino.Model`, checked by `check_conversion` before it is cached. Raises whatever OpenVINO
    raises when the module does not convert, or `verify.VerificationError`.
  """
  ov = _openvino()
  if not cache_root or not _is_local(cache_root):
    return _converted(ref, resolution)
  target = os.path.join(cache_root, CACHE_SUBDIR, cache_key(ref, precision))
  xml = os.path.join(target, _IR_NAME)
  if os.path.exists(xml):
    return ov.Core().read_model(xml)
  model = _converted(ref, resolution)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  tmp = fileio.temp_path_beside(target)
  try:
    ov.save_model(model, os.path.join(tmp, _IR_NAME), compress_to_fp16=False)
    try:
      os.rename(tmp, target)
    except OSError:  # another process cached it first: theirs is as good as ours
      if not os.path.exists(xml):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return model


class Embedder:
  """Calls a compiled OpenVINO model: images `[b, h, w, 3]` float32 -> `[b, d]` float32 numpy.

  The model is compiled once per image size (batch dimension dynamic), with
  `INFERENCE_PRECISION_HINT` set from `precision`.
  """

  def __init__(self, model, precision="float32", input_range=third_party.DEFAULT_RANGE):
    self.model = model
    self.precision = check_precision(precision)
    self.input_range = tuple(input_range)
    self._compiled = {}
    self._function = None

  @property
  def function(self):
    """This embedder as one `tf.function` (made once), for callers that trace what they call:
    `select.features.embed` runs a tf.function as it is rather than wrapping it in a new one, so
    the experts of a pool do not each retrace a wrapper."""
    if self._function is None:
      self._function = tf.function(self.__call__, reduce_retracing=True, autograph=False)
    return self._function

  def compiled_for(self, height, width):
    """`(compiled model, feature output)` for `height` x `width` images, compiled on first use."""
    key = (height, width)
    if key not in self._compiled:
      ov = _openvino()
      model = self.model.clone()
      model.reshape({model.inputs[0]: ov.PartialShape([-1, height, width, 3])})
      compiled = ov.Core().compile_model(
          model, "CPU", {"INFERENCE_PRECISION_HINT": PRECISIONS[self.precision],
                         "PERFORMANCE_HINT": "LATENCY"})
      self._compiled[key] = (compiled, compiled.output(_feature_output(model).get_any_name()))
    return self._compiled[key]

  def __call__(self, images):
    """`[b, d]` float32 features of `images` (`[b, h, w, 3]` in [0, 1]): numpy for numpy or eager
    input; inside a tf.function (as `select.features.embed` calls models), a `tf.numpy_function`
    op whose result is a float32 `[b, d]` tensor."""
    if isinstance(images, tf.Tensor) and not tf.executing_eagerly():
      features = tf.numpy_function(self.run, [images], tf.float32, stateful=False)
      features.set_shape([images.shape[0], None])
      return features
    return self.run(images)

  def run(self, images):
    """`[b, d]` float32 numpy features of numpy (or eager tensor) `images` `[b, h, w, 3]`."""
    images = np.asarray(images, np.float32)
    low, high = self.input_range
    if (low, high) != third_party.DEFAULT_RANGE:
      images = images * np.float32(high - low) + np.float32(low)
    compiled, output = self.compiled_for(*images.shape[1:3])
    features = compiled(np.ascontiguousarray(images))[output]
    return np.asarray(features, np.float32).reshape(len(images), -1)


def load(ref, cache_root=None, precision="float32", resolution=None):
  """An `Embedder` for the module of `ref`, or None (one line printed) when OpenVINO cannot
  convert or run it, so the caller embeds with TensorFlow.

  Args:
    ref: the module's `ExpertRef` (a local `location`; its input range, a third-party `?range=`
      option, applies).
    cache_root, precision: as in `convert`.
    resolution: when given, the model is compiled for `resolution`-pixel square images now, so a
      model OpenVINO converts but cannot compile also falls back here rather than mid-embedding.
  """
  check_precision(precision)
  try:
    model = convert(ref, cache_root, precision, resolution)
    _feature_output(model)
    embedder = Embedder(model, precision, ref.input_range)
    if resolution:
      embedder.compiled_for(resolution, resolution)
  except Exception as e:  # pylint: disable=broad-except  # OpenVINO raises its own many types
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    print(f"OpenVINO cannot convert {ref.handle!r} ({type(e).__name__}: {first[:200]}); "
          "embedding it with TensorFlow.", flush=True)
    return None
  return embedder

