"""Offline tfds builders: determinism, shipped hierarchy, split sizes, real digits, preparation."""
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfexperts.data import hierarchy
from tfexperts.data import offline
from tfexperts.data.builders import digits
from tfexperts.data.builders import render
from tfexperts.data.builders import shapes
from tfexperts.data.builders import taxonomy

_NO_STATS = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)


def _build(name, config, data_dir):
  builder = tfds.builder(name, config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=_NO_STATS)
  return builder


def _examples(builder, split):
  """All examples of a split as sorted (label, image bytes) pairs, i.e. as a multiset."""
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return sorted((int(ex["label"]), ex["image"].tobytes()) for ex in ds.as_numpy_iterator())


def _small_config(seed):
  return shapes.ShapesConfig(name=f"seed{seed}", image_size=16, train_per_class=2,
                             validation_per_class=1, seed=seed)


def test_same_seed_same_images_other_seed_other_images(tmp_path):
  first = _build("tfexperts_shapes", _small_config(0), tmp_path / "a")
  second = _build("tfexperts_shapes", _small_config(0), tmp_path / "b")
  other = _build("tfexperts_shapes", _small_config(1), tmp_path / "c")
  for split in ("train", "validation"):
    a, b, c = (_examples(x, split) for x in (first, second, other))
    assert a == b
    assert [label for label, _ in a] == [label for label, _ in c]
    assert all(image_a != image_c for (_, image_a), (_, image_c) in zip(a, c))
  a_ordered = [ex["image"].tobytes() for ex in first.as_dataset(split="train").as_numpy_iterator()]
  b_ordered = [ex["image"].tobytes() for ex in second.as_dataset(split="train").as_numpy_iterator()]
  assert a_ordered == b_ordered  # the tfds order is deterministic too


def test_downstream_task_builder_is_deterministic(tmp_path):
  config = shapes.ShapesTaskConfig(name="small", image_size=16, num_train=12, num_validation=6,
                                   num_test=6)
  first = _build("tfexperts_shapes_count", config, tmp_path / "a")
  second = _build("tfexperts_shapes_count", config, tmp_path / "b")
  for split in ("train", "validation", "test"):
    assert _examples(first, split) == _examples(second, split)


def test_rendering_is_a_function_of_the_seed_only():
  for leaf in taxonomy.UPSTREAM_CLASSES + taxonomy.FINE_CLASSES:
    a = render.render_single(leaf, 32, np.random.default_rng([3, 1]))
    b = render.render_single(leaf, 32, np.random.default_rng([3, 1]))
    other = render.render_single(leaf, 32, np.random.default_rng([3, 2]))
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other), leaf  # the seed, not a constant, draws the image
  np.testing.assert_array_equal(render.render_count(6, 64, np.random.default_rng(4)),
                                render.render_count(6, 64, np.random.default_rng(4)))
  assert not np.array_equal(render.render_count(6, 64, np.random.default_rng(4)),
                            render.render_count(6, 64, np.random.default_rng(5)))


def test_shipped_hierarchy_is_generated_from_the_class_list():
  with open(taxonomy.hierarchy_path()) as f:
    assert json.load(f) == taxonomy.hierarchy_dict()
  h = hierarchy.load_hierarchy(offline.upstream_hierarchy_path())
  assert h.roots == ("shape",)
  assert set(h.children("shape")) == set(taxonomy.BRANCHES)
  for branch, leaves in taxonomy.BRANCHES.items():
    assert h.children(branch) == leaves
    assert all(h.ancestors(leaf) == {leaf, branch, "shape"} for leaf in leaves)
  assert len(taxonomy.BRANCHES) == 5 and {len(v) for v in taxonomy.BRANCHES.values()} == {5}
  assert not set(taxonomy.FINE_CLASSES) & set(h.nodes)  # downstream leaves are new
  assert set(taxonomy.MIXED_CLASSES) <= set(taxonomy.UPSTREAM_CLASSES)


EXPECTED_SPLITS = {
    "tfexperts_shapes/tiny": {"train": 500, "validation": 100},
    "tfexperts_shapes_fine/tiny": {"train": 1000, "validation": 200, "test": 200},
    "tfexperts_shapes_mixed/tiny": {"train": 1000, "validation": 200, "test": 200},
    "tfexperts_shapes_count/tiny": {"train": 1000, "validation": 200, "test": 200},
    "tfexperts_digits": {"train": 1000, "validation": 200, "test": 597},
}
EXPECTED_CLASSES = {
    "tfexperts_shapes/tiny": taxonomy.UPSTREAM_CLASSES,
    "tfexperts_shapes_fine/tiny": taxonomy.FINE_CLASSES,
    "tfexperts_shapes_mixed/tiny": taxonomy.MIXED_CLASSES,
    "tfexperts_shapes_count/tiny": ("1", "2", "3", "4", "5", "6"),
    "tfexperts_digits": tuple("0123456789"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SPLITS))
def test_tiny_datasets_load_like_any_tfds_dataset(name, offline_data_dir):
  builder = tfds.builder(name, data_dir=offline_data_dir)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == EXPECTED_SPLITS[name]
  assert tuple(builder.info.features["label"].names) == EXPECTED_CLASSES[name]
  ds = tfds.load(name, split="train", data_dir=offline_data_dir, download=False)
  labels = []
  for ex in ds.as_numpy_iterator():
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    labels.append(ex["label"])
  counts = np.bincount(labels, minlength=len(EXPECTED_CLASSES[name]))
  assert counts.sum() == EXPECTED_SPLITS[name]["train"]
  if name != "tfexperts_digits":  # the shapes datasets are balanced by construction
    assert counts.max() - counts.min() <= 1


def test_digits_are_scikit_learns_images(offline_data_dir):
  images, labels = digits.digits_arrays()
  builder = tfds.builder("tfexperts_digits", data_dir=offline_data_dir)
  for split, indices in digits.split_indices().items():
    expected = sorted((int(labels[i]), images[i].tobytes()) for i in indices)
    assert _examples(builder, split) == expected
  from sklearn import datasets
  raw = datasets.load_digits()
  assert images.shape == (1797, 32, 32, 3) and np.array_equal(labels, raw.target)
  # The upsampled image keeps the 8x8 image's mean brightness (0..16 scaled to 0..255).
  np.testing.assert_allclose(images[..., 0].mean((1, 2)), raw.images.mean((1, 2)) * 255 / 16,
                             atol=4)
  splits = digits.split_indices()
  assert sorted(np.concatenate(list(splits.values()))) == list(range(1797))


def test_prepare_reports_present_datasets_and_rejects_unknown_names(offline_data_dir, capsys):
  report = offline.prepare_offline_datasets(offline_data_dir, "tiny")
  assert [r["name"] for r in report] == list(offline.OFFLINE_DATASETS["tiny"])
  assert {r["status"] for r in report} == {"present"}
  assert report[0]["splits"] == {"train": 500, "validation": 100}
  assert "tfexperts_shapes/tiny: present" in capsys.readouterr().out
  with pytest.raises(ValueError, match=r"Unknown offline dataset or config 'huge'. Known configs: "
                                       r"\['demo', 'tiny'\]"):
    offline.prepare_offline_datasets(offline_data_dir, "huge")


def test_prepare_builds_what_is_missing(tmp_path):
  report = offline.prepare_offline_datasets(str(tmp_path), ["tfexperts_digits"], print_fn=None)
  assert [(r["name"], r["status"]) for r in report] == [("tfexperts_digits", "built")]
  assert report[0]["splits"] == {"test": 597, "train": 1000, "validation": 200}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["tfexperts_digits"]
