"""BiT `.npz` checkpoints: round trip, strict key checks, skipping the head."""
import numpy as np
import pytest

from tfexperts.models import bit
from tfexperts.models import checkpoints


def _random_model(seed, **overrides):
  model = bit.create_model("tiny", **overrides)
  rng = np.random.default_rng(seed)
  for v in model.weights:
    v.assign(rng.normal(size=v.shape).astype("float32"))
  return model


IMAGES = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")


def test_npz_write_then_load_gives_identical_outputs(tmp_path):
  source = _random_model(1, num_classes=5)
  path = str(tmp_path / "ckpt" / "BiT-tiny.npz")
  written = checkpoints.save_npz(source, path)
  target = bit.create_model("tiny", num_classes=5)
  assert checkpoints.load_npz(target, path) == written
  for key in ("pre_logits", "logits"):
    np.testing.assert_array_equal(target(IMAGES)[key].numpy(), source(IMAGES)[key].numpy())
  stored = np.load(path)
  assert stored["resnet/head/conv2d/kernel"].shape == (1, 1, 512, 5)
  assert not [p for p in (tmp_path / "ckpt").iterdir() if ".tmp-" in p.name]


def _write(path, arrays):
  np.savez(path, **arrays)
  return str(path)


def test_missing_key_is_an_error_naming_it(tmp_path):
  arrays = {n: v.numpy() for n, v in checkpoints.checkpoint_variables(_random_model(2)).items()}
  del arrays["resnet/block3/unit01/b/group_norm/gamma"]
  path = _write(tmp_path / "missing.npz", arrays)
  with pytest.raises(ValueError, match="missing keys.*resnet/block3/unit01/b/group_norm/gamma"):
    checkpoints.load_npz(bit.create_model("tiny"), path)


def test_extra_key_is_an_error_naming_it(tmp_path):
  arrays = {n: v.numpy() for n, v in checkpoints.checkpoint_variables(_random_model(3)).items()}
  arrays["resnet/block9/unit01/a/group_norm/gamma"] = np.ones(4, "float32")
  path = _write(tmp_path / "extra.npz", arrays)
  with pytest.raises(ValueError, match="unexpected keys.*resnet/block9/unit01/a/group_norm/gamma"):
    checkpoints.load_npz(bit.create_model("tiny"), path)


def test_shape_mismatch_names_key_and_shapes(tmp_path):
  arrays = {n: v.numpy() for n, v in checkpoints.checkpoint_variables(_random_model(4)).items()}
  arrays["resnet/group_norm/gamma"] = np.ones(3, "float32")
  path = _write(tmp_path / "shape.npz", arrays)
  with pytest.raises(ValueError, match=r"resnet/group_norm/gamma.*\(3,\).*\(512,\)"):
    checkpoints.load_npz(bit.create_model("tiny"), path)


def test_head_of_other_class_count_loads_only_when_skipped(tmp_path):
  source = _random_model(5, num_classes=10)
  path = str(tmp_path / "upstream.npz")
  checkpoints.save_npz(source, path)
  target = bit.create_model("tiny", num_classes=3)
  before = [v.numpy() for v in target.weights]
  with pytest.raises(ValueError, match="resnet/head/conv2d/"):
    checkpoints.load_npz(target, path)
  for old, v in zip(before, target.weights):  # a failed load changes nothing
    np.testing.assert_array_equal(old, v.numpy())
  loaded = checkpoints.load_npz(target, path, skip=("resnet/head",))
  assert not [n for n in loaded if n.startswith("resnet/head")]
  np.testing.assert_array_equal(target(IMAGES)["pre_logits"].numpy(),
                                source(IMAGES)["pre_logits"].numpy())
  np.testing.assert_array_equal(target(IMAGES)["logits"].numpy(), 0.0)
  headless = bit.create_model("tiny")
  checkpoints.load_npz(headless, path, skip=("resnet/head",))
