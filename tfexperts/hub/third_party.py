"""Third-party feature modules: any SavedModel mapping images to `[b, d]` features.

A module ranks beside the project's experts when it maps float images `[b, h, w, 3]` to a
`[b, d]` float tensor through one of (first found): `__call__` (tf.Module, reusable SavedModels,
TF-Hub feature vectors), a `serve` endpoint (Keras 3 `model.export`), or the `serving_default`
signature with one input and one output (or a "pre_logits" / "feature_vector" / "default" one).

Images are in [0, 1]. A module that expects another range declares it with a handle option:
`HANDLE?range=-1,1` or `HANDLE?range=-1:1` (the form to use in comma-separated flags such as
`--experts`): images are mapped linearly from [0, 1] to [-1, 1] before the call.
`split_options` separates such options from the handle (once, in `hub.load.reference`).
"""
import urllib.parse

from tfexperts.errors import UserError

OPTIONS = ("range",)
DEFAULT_RANGE = (0.0, 1.0)
FEATURE_OUTPUTS = ("pre_logits", "feature_vector", "default")


def split_options(handle):
  """`(handle without options, {option: value})` of `"HANDLE?range=-1,1"`.

  A handle without "?" has no options. Raises UserError for unknown or repeated options (the
  message names them and the valid ones) and for a malformed range.
  """
  if not isinstance(handle, str) or "?" not in handle:
    return handle, {}
  base, _, query = handle.partition("?")
  try:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
  except ValueError as e:
    raise UserError(f"Cannot parse the options of hub handle {handle!r}: {e}. Expected "
                    "HANDLE?range=LOW,HIGH.") from e
  keys = [k for k, _ in pairs]
  bad = sorted({k for k in keys if k not in OPTIONS or keys.count(k) > 1})
  if bad:
    raise UserError(f"Hub handle {handle!r}: unknown or repeated options {bad}. Options: "
                    f"{list(OPTIONS)}, e.g. HANDLE?range=-1,1.")
  options = dict(pairs)
  if "range" in options:
    options["range"] = _parse_range(handle, options["range"])
  return base, options


def _parse_range(handle, text):
  try:
    low, high = (float(v) for v in text.replace(":", ",").split(","))
  except ValueError:
    low = high = None
  if low is None or not low < high:
    raise UserError(f"Hub handle {handle!r}: range must be two numbers LOW,HIGH or LOW:HIGH "
                    f"with LOW < HIGH (e.g. range=-1,1, or range=-1:1 inside a comma-separated "
                    f"flag such as --experts). Received: range={text!r}")
  return (low, high)


def rescale(images, value_range):
  """Maps [0, 1] images linearly to `value_range` (unchanged for (0, 1))."""
  low, high = value_range
  if (low, high) == DEFAULT_RANGE:
    return images
  return low + images * (high - low)


def _signature_fn(handle, signature):
  inputs = signature.structured_input_signature[1]
  outputs = signature.structured_outputs
  if len(inputs) != 1:
    raise ValueError(f"Hub handle {handle!r}: its serving_default signature takes {sorted(inputs)}"
                     ", not one image input.")
  out_key = next(iter(outputs)) if len(outputs) == 1 else next(
      (k for k in FEATURE_OUTPUTS if k in outputs), None)
  if out_key is None:
    raise ValueError(f"Hub handle {handle!r}: its serving_default signature returns "
                     f"{sorted(outputs)}; expected one output or one of {list(FEATURE_OUTPUTS)}.")
  in_key = next(iter(inputs))
  return lambda images: signature(**{in_key: images})[out_key]


class FeatureModule:
  """A loaded SavedModel called as `images [b, h, w, 3] in [0, 1] -> features`.

  Attributes other than the call (e.g. `logits`, `variables`) are the loaded object's.
  """

  def __init__(self, loaded, handle, value_range=DEFAULT_RANGE):
    self.loaded, self.handle, self.value_range = loaded, handle, tuple(value_range)
    if callable(loaded):
      self._call = loaded
    elif hasattr(loaded, "serve"):
      self._call = loaded.serve
    elif "serving_default" in getattr(loaded, "signatures", {}):
      self._call = _signature_fn(handle, loaded.signatures["serving_default"])
    else:
      raise ValueError(f"Hub handle {handle!r} is a SavedModel without __call__, a `serve` "
                       "endpoint or a serving_default signature: nothing maps images to features.")

  def __call__(self, images, *args, **kwargs):
    return self._call(rescale(images, self.value_range), *args, **kwargs)

  def __getattr__(self, name):
    return getattr(self.__dict__["loaded"], name)


def feature_module(loaded, handle, value_range=DEFAULT_RANGE):
  """`loaded` itself when it is callable and takes images in the default range, else a
  `FeatureModule` mapping [0, 1] images to `value_range` (the handle's `?range=`, parsed already).

  Raises ValueError naming the handle when nothing in the SavedModel maps images to features.
  """
  value_range = tuple(value_range)
  if callable(loaded) and value_range == DEFAULT_RANGE:
    return loaded
  return FeatureModule(loaded, handle, value_range)

