"""Preprocessing ops: each op eagerly and inside tf.data, the pipeline parser, seeded randomness."""
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.data import preprocess as pp

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
PNG = tf.io.encode_png(IMAGE).numpy()


def _in_dataset(op, features, seed=None):
  """Runs `op` on one example inside `tf.data.Dataset.map`; returns the numpy features."""
  ds = tf.data.Dataset.from_tensors(features)
  if seed is not None:
    ds = pp.add_seeds(ds, seed)
  return next(iter(ds.map(op).as_numpy_iterator()))


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_decode_png_bytes_and_pass_decoded_images_through(where):
  run = (lambda op, f: op(f)) if where == "eager" else _in_dataset
  out = run(pp.get_op("decode"), {"image": PNG, "label": 3})
  np.testing.assert_array_equal(np.asarray(out["image"]), IMAGE)
  assert int(out["label"]) == 3
  gray = IMAGE[..., :1]
  out = run(pp.get_op("decode"), {"image": gray})
  np.testing.assert_array_equal(np.asarray(out["image"]), np.repeat(gray, 3, axis=-1))
  out = run(pp.get_op("decode"), {"image": tf.io.encode_png(gray).numpy()})
  np.testing.assert_array_equal(np.asarray(out["image"]), np.repeat(gray, 3, axis=-1))


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_resize_keeps_dtype_and_constant_images(where):
  run = (lambda op, f: op(f)) if where == "eager" else _in_dataset
  constant = np.full((5, 7, 3), 200, np.uint8)
  out = run(pp.get_op("resize", 12), {"image": constant})["image"]
  assert out.dtype == np.uint8 and out.shape == (12, 12, 3)
  np.testing.assert_array_equal(out, 200)
  out = run(pp.get_op("resize", (4, 6)), {"image": IMAGE.astype(np.float32)})["image"]
  assert out.dtype == np.float32 and out.shape == (4, 6, 3)
  np.testing.assert_allclose(np.asarray(out), tf.image.resize(IMAGE.astype(np.float32), (4, 6)))


def _find_window(image, crop):
  """Returns the (top, left) offsets where `crop` appears in `image`, all of them."""
  h, w = crop.shape[:2]
  return [(t, l) for t in range(image.shape[0] - h + 1) for l in range(image.shape[1] - w + 1)
          if np.array_equal(image[t:t + h, l:l + w], crop)]


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_random_crop_is_a_window_of_the_input(where):
  run = (lambda op, f: op(f)) if where == "eager" else (lambda op, f: _in_dataset(op, f, seed=1))
  out = np.asarray(run(pp.get_op("random_crop", (4, 5)), {"image": IMAGE})["image"])
  assert out.shape == (4, 5, 3)
  assert len(_find_window(IMAGE, out)) == 1


def test_seeded_random_crop_is_deterministic_and_varies_across_examples():
  ds = pp.add_seeds(tf.data.Dataset.from_tensors({"image": IMAGE}).repeat(40), seed=5)
  crops = lambda: [_find_window(IMAGE, ex["image"])[0]
                   for ex in ds.map(pp.get_op("random_crop", 3)).as_numpy_iterator()]
  first = crops()
  assert first == crops()
  assert len(set(first)) > 5  # 4 x 6 = 24 possible windows


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_resize_random_crop(where):
  run = (lambda op, f: op(f)) if where == "eager" else (lambda op, f: _in_dataset(op, f, seed=2))
  constant = np.full((5, 7, 3), 9, np.uint8)
  out = np.asarray(run(pp.get_op("resize_random_crop", 10, 8), {"image": constant})["image"])
  assert out.shape == (8, 8, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, 9)
  with pytest.raises(ValueError, match=r"`crop_size` must fit.*resize_size=\(10, 10\), "
                                       r"crop_size=\(12, 12\)"):
    pp.get_op("resize_random_crop", 10, 12)


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_central_crop_takes_the_middle(where):
  run = (lambda op, f: op(f)) if where == "eager" else _in_dataset
  out = run(pp.get_op("central_crop", 4), {"image": IMAGE})["image"]
  np.testing.assert_array_equal(np.asarray(out), IMAGE[1:5, 2:6])
  out = run(pp.get_op("central_crop", (3, 5)), {"image": IMAGE})["image"]
  np.testing.assert_array_equal(np.asarray(out), IMAGE[1:4, 1:6])


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_value_range(where):
  run = (lambda op, f: op(f)) if where == "eager" else _in_dataset
  pixels = np.array([[[0, 51, 255]]], np.uint8)
  out = np.asarray(run(pp.get_op("value_range", 0, 1), {"image": pixels})["image"])
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, [[[0.0, 0.2, 1.0]]], atol=1e-7)
  out = np.asarray(run(pp.get_op("value_range"), {"image": pixels})["image"])
  np.testing.assert_allclose(out, [[[-1.0, -0.6, 1.0]]], atol=1e-6)
  out = run(pp.get_op("value_range", 0, 1, 0, 100, True), {"image": pixels})["image"]
  np.testing.assert_allclose(np.asarray(out), [[[0.0, 0.51, 1.0]]], atol=1e-6)


def _flipped_fraction(images, outputs):
  flipped = 0
  for image, out in zip(images, outputs):
    if np.array_equal(out, image[:, ::-1]):
      flipped += 1
    else:
      np.testing.assert_array_equal(out, image)
  return flipped / len(images)


def test_flip_lr_flips_about_half_of_a_batch_per_example():
  images = RNG.integers(0, 256, (1000, 3, 4, 3), dtype=np.uint8)
  out = pp.get_op("flip_lr")({"image": images})["image"].numpy()  # stateful, batched
  assert 0.42 < _flipped_fraction(images, out) < 0.58
  seeded = pp.get_op("flip_lr")({"image": images, pp.SEED_KEY: [3, 4]})["image"].numpy()
  assert 0.42 < _flipped_fraction(images, seeded) < 0.58


def test_flip_lr_in_dataset_flips_about_half_deterministically():
  images = RNG.integers(0, 256, (1000, 3, 4, 3), dtype=np.uint8)
  ds = pp.add_seeds(tf.data.Dataset.from_tensor_slices({"image": images}), seed=11)
  ds = ds.map(pp.get_preprocess_fn("flip_lr"), num_parallel_calls=4)
  first = [ex["image"] for ex in ds.as_numpy_iterator()]
  assert 0.42 < _flipped_fraction(images, first) < 0.58
  again = [ex["image"] for ex in ds.as_numpy_iterator()]
  np.testing.assert_array_equal(first, again)


def test_pipeline_string_and_list_forms_agree_and_drop_the_seed():
  spec = "decode|resize(10)|random_crop(8)|flip_lr|value_range(0,1)"
  ds = pp.add_seeds(tf.data.Dataset.from_tensors({"image": PNG, "label": 1}).repeat(6), seed=3)
  run = lambda fn: list(ds.map(fn).as_numpy_iterator())
  from_string = run(pp.get_preprocess_fn(spec))
  from_list = run(pp.get_preprocess_fn(spec.split("|")))
  for a, b in zip(from_string, from_list):
    assert sorted(a) == ["image", "label"]
    assert a["image"].shape == (8, 8, 3) and a["image"].dtype == np.float32
    assert 0.0 <= a["image"].min() and a["image"].max() <= 1.0
    np.testing.assert_array_equal(a["image"], b["image"])


def test_pipeline_mixes_callables_and_keeps_keys():
  fn = pp.get_preprocess_fn(["decode", lambda f: {**f, "extra": 1}, "keep('image', 'extra')"])
  out = fn({"image": PNG, "label": 1})
  assert sorted(out) == ["extra", "image"]
  assert pp.get_preprocess_fn(None)({"a": 1}) == {"a": 1}


def test_unknown_op_lists_known_ops():
  with pytest.raises(ValueError, match=r"Unknown preprocessing op 'flip_up'.*Known ops: "
                                       r"\['central_crop', 'decode', 'flip_lr', 'keep', "
                                       r"'random_crop', 'resize', 'resize_random_crop', "
                                       r"'value_range'\]"):
    pp.get_preprocess_fn("decode|flip_up")


@pytest.mark.parametrize("spec, message", [
    ("decode|resize(16", r"Cannot parse preprocessing op 'resize\(16'"),
    ("resize(size=x)", r"Cannot parse preprocessing op 'resize\(size=x\)'"),
    ("resize(1, 2, 3, 4, 5)", r"Bad arguments for preprocessing op resize\(size, method="),
    ("resize(0)", r"`size` must be a positive int.*Received: size=0"),
    ("value_range(0, 1, 5, 5)", "`in_max` must exceed `in_min`"),
])
def test_bad_specs_explain_themselves(spec, message):
  with pytest.raises(ValueError, match=message):
    pp.get_preprocess_fn(spec)


def test_compose_passes_the_seed_to_every_spec():
  # A "decode" step made separately would drop the seed, leaving later random ops unseeded (and
  # a resumed pipeline, which skips records before decoding, augmenting differently).
  images = RNG.integers(0, 256, (40, 3, 4, 3), dtype=np.uint8)
  ds = pp.add_seeds(tf.data.Dataset.from_tensor_slices({"image": images}), seed=5)
  composed = pp.compose("value_range(0, 1)", [lambda f: f], "flip_lr")
  whole = [ex["image"] for ex in ds.map(pp.get_preprocess_fn("value_range(0,1)|flip_lr"))
           .as_numpy_iterator()]
  out = [ex["image"] for ex in ds.map(composed).as_numpy_iterator()]
  np.testing.assert_array_equal(out, whole)
  resumed = [ex["image"] for ex in ds.skip(30).map(composed).as_numpy_iterator()]
  np.testing.assert_array_equal(resumed, out[30:])
