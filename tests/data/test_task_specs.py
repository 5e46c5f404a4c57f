"""Task strings: VTAB-1k split rules, tfds: feature detection and errors, folder: layouts."""
import collections
import os

import numpy as np
import pytest

from tests.data import image_folders
from tfexperts.data import tasks
from tfexperts.data import vtab_splits
from tfexperts.errors import UserError


def _ranges(sizes):
  ranges, note = vtab_splits.vtab1k_splits(sizes)
  return {name: r.tfds() for name, r in ranges.items()}, note


def test_vtab1k_split_rules():
  assert _ranges({"train": 5000, "test": 300, "validation": 100})[0] == {
      "train800": "train[:800]", "val200": "train[800:1000]", "train800val200": "train[:1000]",
      "test": "test"}
  splits, note = _ranges({"train": 2000, "validation": 100})
  assert splits["test"] == "validation" and "no 'test' split" in note
  splits, note = _ranges({"train": 1500})
  assert (splits["train800val200"], splits["test"]) == ("train[:1000]", "train[1000:]")
  splits, note = _ranges({"train": 500, "test": 50})  # < 1000: 80/20 of what there is
  assert splits == {"train800": "train[:400]", "val200": "train[400:500]",
                    "train800val200": "train[:500]", "test": "test"}
  assert "only 500 examples for training" in note
  splits, note = _ranges({"train": 100})  # no held-out split: 20% test first, then 80/20
  assert splits == {"train800": "train[:64]", "val200": "train[64:80]",
                    "train800val200": "train[:80]", "test": "train[80:]"}
  with pytest.raises(UserError, match="no 'train' split.*Splits: \\['test'\\]"):
    _ranges({"test": 10})
  with pytest.raises(UserError, match="too small.*'train800'"):
    _ranges({"train": 1, "test": 5})


def test_tfds_spec_detects_keys_and_resolves_small_splits(offline_data_dir):
  task = tasks.get_task("tfds:tfexperts_shapes/tiny?label=label", offline_data_dir)
  assert (task.image_key, task.label_key, task.num_classes) == ("image", "label", 25)
  assert task.name == "tfds-tfexperts_shapes_tiny-label_label" and task.group == "custom"
  described = task.describe_splits(offline_data_dir)
  assert {k: described[k] for k in vtab_splits.SPLIT_NAMES} == {
      "train800": "train[:400]", "val200": "train[400:500]", "train800val200": "train[:500]",
      "test": "validation"}
  assert "only 500 examples for training" in described["note"]
  assert task.num_examples("val200", offline_data_dir) == 100
  images, labels = next(iter(task.load("test", offline_data_dir, image_size=16, batch_size=4)))
  assert images.shape == (4, 16, 16, 3) and labels.dtype.name == "int32"
  fine = tasks.get_task("tfds:tfexperts_shapes_fine/tiny:1.*.*", offline_data_dir)
  assert (fine.label_key, fine.num_classes, fine.version) == ("label", 5, "1.*.*")
  assert fine.splits["train800"] == "train[:800]" and fine.splits["test"] == "test"


@pytest.mark.parametrize("spec, message", [
    ("tfds:tfexperts_shapes/tiny", r"2 \(\['label', 'branch'\]\) ClassLabel features"),
    ("tfds:tfexperts_shapes/tiny?label=fine", r"no feature 'fine'"),
    ("tfds:tfexperts_shapes/tiny?image=label&label=label", r"feature 'label' is a ClassLabel, not"),
])
def test_tfds_spec_with_missing_or_ambiguous_key_lists_the_features(offline_data_dir, spec,
                                                                    message):
  with pytest.raises(UserError, match=message) as info:
    tasks.get_task(spec, offline_data_dir)
  assert ("Features: {'image': 'Image', 'label': 'ClassLabel', 'branch': 'ClassLabel'}"
          in str(info.value))


@pytest.mark.parametrize("spec, message", [
    ("tfds:tfexperts_digits?labels=x", r"unknown or repeated options \['labels'\]"),
    ("tfds:no_such_dataset", r"has no dataset 'no_such_dataset'"),
    ("tfds:", "names no dataset"),
    ("folder:/no/such/dir", "'/no/such/dir' does not exist"),
    ("nope", "Unknown task 'nope'.*folder:PATH"),
])
def test_bad_task_strings(offline_data_dir, spec, message):
  with pytest.raises(UserError, match=message):
    tasks.get_task(spec, offline_data_dir)


def _labels(task, split):
  return [int(label) for _, label in task.load(split, image_size=8)]


def test_flat_folder_is_shuffled_then_split(tmp_path):
  root = image_folders.flat_folder(str(tmp_path / "pics"))
  task = tasks.get_task(f"folder:{root}")
  assert task.num_classes == 3 and task.name.startswith("folder-pics-")
  sizes = {s: task.num_examples(s) for s in vtab_splits.SPLIT_NAMES}
  assert sizes == {"train800": 19, "val200": 5, "train800val200": 24, "test": 6}
  assert "only 30 training examples" in task.describe_splits()["note"]
  train = _labels(task, "train800")
  assert train != sorted(train) and set(train) == {0, 1, 2}  # shuffled: no class-ordered split
  assert collections.Counter(train + _labels(task, "val200") + _labels(task, "test")) == {
      0: 10, 1: 10, 2: 10}
  assert _labels(task, "train800val200") == train + _labels(task, "val200")
  # Same seed, same splits; another seed shuffles differently; the file list is in the name.
  assert _labels(tasks.get_task(f"folder:{root}"), "train800") == train
  assert _labels(tasks.get_task(f"folder:{root}?seed=1"), "train800") != train
  image_folders.write_class(os.path.join(root, "dog"), "dog", 11, seed=7)
  assert tasks.get_task(f"folder:{root}").name != task.name


def test_train_test_folder_keeps_its_test_images(tmp_path):
  root = image_folders.split_folder(str(tmp_path / "split"))
  task = tasks.get_task(f"folder:{root}")
  described = task.describe_splits()
  assert described["test"] == "test/" and "train[:19] of train/" in described["train800"]
  assert sorted(_labels(task, "test")) == [0] * 3 + [1] * 3 + [2] * 3
  assert len(_labels(task, "train800val200")) == 24
  images, _ = next(iter(task.load("test", image_size=(10, 12), batch_size=9)))
  assert images.shape == (9, 10, 12, 3)
  assert float(np.min(images)) >= 0.0 and float(np.max(images)) <= 1.0
  cat = images.numpy()[:3].mean(axis=(0, 1, 2))  # cats are red, as written
  assert cat[0] > 0.6 and cat[1] < 0.35


def test_bad_folders(tmp_path):
  root = image_folders.flat_folder(str(tmp_path / "bad"), per_class=4)
  broken = os.path.join(root, "dog", "broken.png")
  with open(broken, "wb") as f:
    f.write(b"\x89PNG truncated")
  task = tasks.get_task(f"folder:{root}")
  with pytest.raises(UserError, match="1 unreadable image file") as info:
    for split in vtab_splits.SPLIT_NAMES:
      _labels(task, split)
  assert broken in str(info.value)
  split = image_folders.split_folder(str(tmp_path / "split"), train=2, test=1)
  os.makedirs(os.path.join(split, "test", "yak"))
  image_folders.write_class(os.path.join(split, "test", "yak"), "emu", 1, seed=0)
  with pytest.raises(UserError, match=r"test/ has classes that train/ lacks: \['yak'\]"):
    tasks.get_task(f"folder:{split}")
  os.makedirs(tmp_path / "empty" / "cls")
  with pytest.raises(UserError, match=r"class folders without .jpg/.jpeg/.png images: \['cls'\]"):
    tasks.get_task(f"folder:{tmp_path / 'empty'}")
