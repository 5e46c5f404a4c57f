"""Named, composable preprocessing ops on feature dicts, big_vision style.

A pipeline is a string such as `"decode|resize(160)|random_crop(128)|flip_lr|value_range(0,1)"`
or a list of such op strings (and/or callables). `get_preprocess_fn(spec)` turns it into one
function `features dict -> features dict`, usable eagerly and inside `tf.data.Dataset.map`. Op
arguments are Python literals, positional or keyword: `value_range(0, 1)`, `resize(size=(64, 48))`.
Every image op reads and writes `features["image"]` unless given another `key=`.

Random ops (`random_crop`, `flip_lr`, `resize_random_crop`) draw from a per-example stateless seed
stored under `SEED_KEY` when present (see `add_seeds`), which makes augmentation deterministic
whatever the `tf.data` parallelism; each random op splits the seed so consecutive ops differ.
Without a seed they fall back to TF's stateful random ops. The composed function removes
`SEED_KEY` from its output.
"""
import ast
import inspect

import tensorflow as tf

SEED_KEY = "_seed"

_REGISTRY = {}


def register(name):
  """Decorator registering an op constructor under `name`; returns the constructor unchanged."""
  def wrap(constructor):
    if name in _REGISTRY:
      raise ValueError(f"Preprocessing op {name!r} is already registered.")
    _REGISTRY[name] = constructor
    return constructor
  return wrap


def known_ops():
  """Returns the sorted names of all registered ops."""
  return sorted(_REGISTRY)


def get_op(name, *args, **kwargs):
  """Builds the op `name` with the given arguments; returns a function on feature dicts.

  Raises ValueError listing the known ops when `name` is unknown, or showing the op's signature
  when the arguments do not fit it.
  """
  if name not in _REGISTRY:
    raise ValueError(f"Unknown preprocessing op {name!r}. Known ops: {known_ops()}")
  constructor = _REGISTRY[name]
  try:
    inspect.signature(constructor).bind(*args, **kwargs)
  except TypeError as e:
    raise ValueError(f"Bad arguments for preprocessing op {name}{inspect.signature(constructor)}"
                     f": {e}. Received: args={args!r}, kwargs={kwargs!r}") from e
  return constructor(*args, **kwargs)


def parse_op(text):
  """Parses one op string like `"resize(160)"` or `"flip_lr"`; returns `(name, args, kwargs)`."""
  try:
    node = ast.parse(text.strip(), mode="eval").body
    if isinstance(node, ast.Name):
      return node.id, (), {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
      args = tuple(ast.literal_eval(a) for a in node.args)
      kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
      if None in kwargs:
        raise ValueError("**kwargs are not supported")
      return node.func.id, args, kwargs
  except (SyntaxError, ValueError) as e:
    raise ValueError(f"Cannot parse preprocessing op {text!r}: expected `name` or `name(args)` "
                     f"with literal arguments ({e}).") from e
  raise ValueError(f"Cannot parse preprocessing op {text!r}: expected `name` or `name(args)` "
                   "with literal arguments.")


def _items(spec):
  if spec is None:
    return []
  if isinstance(spec, str):
    return [s for s in spec.split("|") if s.strip()]
  if isinstance(spec, (list, tuple)):
    return list(spec)
  raise ValueError("A preprocessing spec must be a '|'-separated string, a list of op strings "
                   f"or callables, or None. Received: {spec!r}")


def compose(*specs):
  """One function running several specs in order, e.g. `compose("decode", user_spec)`.

  Unlike chaining `get_preprocess_fn` results, which would drop `SEED_KEY` after the first, the
  per-example seed reaches the random ops of every spec. Returns a function on feature dicts.
  """
  return get_preprocess_fn([item for spec in specs for item in _items(spec)])


def get_preprocess_fn(spec):
  """Composes a pipeline into one function `features -> features`.

  Takes a `|`-separated string, a list of op strings and/or callables, or None/"" (identity).
  The returned function applies the ops in order on a shallow copy of the dict and drops
  `SEED_KEY`. Raises ValueError on unknown ops (listing the known ones) or unparsable text.
  """
  items = _items(spec)
  ops = []
  for item in items:
    if callable(item):
      ops.append(item)
    elif isinstance(item, str):
      name, args, kwargs = parse_op(item)
      ops.append(get_op(name, *args, **kwargs))
    else:
      raise ValueError(f"Preprocessing ops must be strings or callables. Received: {item!r}")

  def preprocess(features):
    features = dict(features)
    for op in ops:
      features = op(features)
    features.pop(SEED_KEY, None)
    return features
  return preprocess


def add_seeds(dataset, seed):
  """Attaches a distinct stateless seed (`[2]` int64) to every element of a dict dataset.

  Takes a `tf.data.Dataset` of feature dicts and an int seed; returns the dataset with
  `features[SEED_KEY]` set, so seeded random ops are deterministic. Same seed, same seeds.
  """
  seeds = tf.data.Dataset.random(seed=seed).batch(2)
  return tf.data.Dataset.zip((dataset, seeds)).map(lambda f, s: {**f, SEED_KEY: s})


def _take_seed(features):
  """Returns a fresh stateless seed from `features` (and advances it), or None without one."""
  if SEED_KEY not in features:
    return None
  seeds = tf.random.experimental.stateless_split(features[SEED_KEY], num=2)
  features[SEED_KEY] = seeds[1]
  return seeds[0]


def _size_pair(size, what="size"):
  pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
  if (not isinstance(pair, (tuple, list)) or len(pair) != 2 or
      any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in pair)):
    raise ValueError(f"`{what}` must be a positive int or a (height, width) pair of positive ints. "
                     f"Received: {what}={size!r}")
  return tuple(pair)


def _image_op(key, fn):
  """Wraps `fn(image, features) -> image` into an op reading and writing `features[key]`."""
  def op(features):
    features = dict(features)
    features[key] = fn(tf.convert_to_tensor(features[key]), features)
    return features
  return op


@register("decode")
def decode(channels=3, key="image"):
  """Decodes an encoded image string (PNG/JPEG/...) to uint8 `[h, w, channels]`.

  Already-decoded images pass through, with 1-channel images tiled to 3 channels when
  `channels=3`, so `decode` can start every pipeline.
  """
  if channels not in (1, 3):
    raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels!r}")

  def fn(image, _):
    if image.dtype == tf.string:
      return tf.io.decode_image(image, channels=channels, expand_animations=False)
    if channels == 3 and image.shape.rank is not None and image.shape[-1] == 1:
      return tf.tile(image, [1] * (image.shape.rank - 1) + [3])
    return image
  return _image_op(key, fn)


def _resize(image, size, method, antialias):
  resized = tf.image.resize(image, size, method=method, antialias=antialias)
  if image.dtype == tf.uint8:  # keep the dtype so value_range's input range still holds
    return tf.saturate_cast(tf.round(resized), tf.uint8)
  return tf.cast(resized, image.dtype)


@register("resize")
def resize(size, method="bilinear", antialias=False, key="image"):
  """Resizes to `size` (int or (height, width)) keeping the dtype (uint8 stays uint8, rounded)."""
  size = _size_pair(size)
  return _image_op(key, lambda image, _: _resize(image, size, method, antialias))


def _random_crop(image, size, features):
  crop = [size[0], size[1], tf.shape(image)[-1]]
  seed = _take_seed(features)
  if seed is None:
    return tf.image.random_crop(image, crop)
  return tf.image.stateless_random_crop(image, crop, seed=seed)


@register("random_crop")
def random_crop(size, key="image"):
  """Crops a random `size` window (int or (height, width)) of a `[h, w, c]` image."""
  size = _size_pair(size)
  return _image_op(key, lambda image, features: _random_crop(image, size, features))


@register("resize_random_crop")
def resize_random_crop(resize_size, crop_size, method="bilinear", key="image"):
  """Resizes to `resize_size`, then crops a random `crop_size` window (BiT's training crop)."""
  resize_size, crop_size = _size_pair(resize_size, "resize_size"), _size_pair(crop_size,
                                                                              "crop_size")
  if crop_size[0] > resize_size[0] or crop_size[1] > resize_size[1]:
    raise ValueError(f"`crop_size` must fit inside `resize_size`. Received: "
                     f"resize_size={resize_size}, crop_size={crop_size}")
  return _image_op(key, lambda image, features: _random_crop(
      _resize(image, resize_size, method, False), crop_size, features))


@register("central_crop")
def central_crop(size, key="image"):
  """Crops the central `size` window (int or (height, width)) of a `[h, w, c]` image."""
  size = _size_pair(size)

  def fn(image, _):
    shape = tf.shape(image)
    top, left = (shape[0] - size[0]) // 2, (shape[1] - size[1]) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size[0], size[1])
  return _image_op(key, fn)


@register("flip_lr")
def flip_lr(key="image"):
  """Flips left-right with probability 1/2, independently per example (also within a batch)."""
  def fn(image, features):
    seed = _take_seed(features)
    if seed is None:
      return tf.image.random_flip_left_right(image)
    return tf.image.stateless_random_flip_left_right(image, seed=seed)
  return _image_op(key, fn)


@register("value_range")
def value_range(vmin=-1.0, vmax=1.0, in_min=0.0, in_max=255.0, clip_values=False, key="image"):
  """Maps values linearly from [in_min, in_max] (default uint8 range) to [vmin, vmax], as float32.

  `value_range(0, 1)` gives the [0, 1] range that tfexperts models and hub modules take.
  """
  if in_max <= in_min:
    raise ValueError(f"`in_max` must exceed `in_min`. Received: in_min={in_min!r}, "
                     f"in_max={in_max!r}")

  def fn(image, _):
    image = tf.cast(image, tf.float32)
    image = vmin + (image - in_min) * ((vmax - vmin) / (in_max - in_min))
    if clip_values:
      image = tf.clip_by_value(image, min(vmin, vmax), max(vmin, vmax))
    return image
  return _image_op(key, fn)


@register("keep")
def keep(*keys):
  """Keeps only the given keys of the features dict (and the seed, which the pipeline drops)."""
  def op(features):
    missing = [k for k in keys if k not in features]
    if missing:
      raise KeyError(f"keep{keys}: missing keys {missing}. Available: {sorted(features)}")
    return {k: v for k, v in features.items() if k in keys or k == SEED_KEY}
  return op
