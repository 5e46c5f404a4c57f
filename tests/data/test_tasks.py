"""Task registry: every VTAB/DAT task against its real tfds builder (tfds.testing.mock_data for
the examples), label functions on hand-made examples, offline tasks on real built data."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from tfexperts.data import tasks

# Split sizes of the real datasets (tfds catalog). Only the metadata is written (no examples),
# so split strings resolve against realistic sizes; examples come from mock_data.
SPLIT_SIZES = {
    "caltech101": {"train": 3060, "test": 6084},
    "cifar100": {"train": 50000, "test": 10000},
    "dtd": {"train": 1880, "validation": 1880, "test": 1880},
    "oxford_flowers102": {"train": 1020, "validation": 1020, "test": 6149},
    "oxford_iiit_pet": {"train": 3680, "test": 3669},
    "svhn_cropped": {"train": 73257, "test": 26032, "extra": 531131},
    "sun397/tfds": {"train": 76128, "validation": 10875, "test": 21750},
    "patch_camelyon": {"train": 262144, "validation": 32768, "test": 32768},
    "eurosat/rgb": {"train": 27000},
    "resisc45": {"train": 31500},
    "diabetic_retinopathy_detection/btgraham-300": {"train": 35126, "validation": 10906,
                                                    "test": 42670},
    "clevr": {"train": 70000, "validation": 15000, "test": 15000},
    "dmlab": {"train": 65550, "validation": 22628, "test": 22735},
    "kitti": {"train": 6347, "validation": 423, "test": 711},
    "dsprites": {"train": 737280},
    "smallnorb": {"train": 24300, "test": 24300},
    "cifar10": {"train": 50000, "test": 10000},
    "food101": {"train": 75750, "validation": 25250},
    "cars196": {"train": 8144, "test": 8041},
    "caltech_birds2011": {"train": 5994, "test": 5794},
}
# Versions the installed tfds code lacks: metadata of the code's version is written under this
# (older) version, as a data dir prepared by an older tfds would hold it.
OLD_VERSIONS = {"oxford_iiit_pet:3.*.*": "3.2.0"}
NUM_MOCK_EXAMPLES = 6
EXTERNAL_TASKS = tasks.list_tasks(suite="vtab") + tasks.list_tasks(suite="dat")


def _write_metadata(task, data_dir):
  """Writes dataset_info.json (+ features) of the task's real builder, with SPLIT_SIZES."""
  version = OLD_VERSIONS.get(task.tfds_spec)
  builder = tfds.builder(task.tfds_name if version else task.tfds_spec, data_dir=data_dir)
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0)
      for name, n in SPLIT_SIZES[task.tfds_name].items()]))
  target = os.path.join(os.path.dirname(builder.data_dir), version or str(builder.version))
  os.makedirs(target)
  builder.info.write_to_directory(target)
  if version:
    path = os.path.join(target, "dataset_info.json")
    with open(path) as f:
      info = json.load(f)
    info["version"] = version
    with open(path, "w") as f:
      json.dump(info, f)
  return builder


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  """Random examples from the builder's feature spec (tfds's RandomFakeGenerator), with every
  dynamic dimension 10 (so CLEVR scenes have 10 objects, as real ones have 3..10), and features
  under `SkipDecoding` encoded as the real reader returns them."""
  del split, read_config, shuffle_files
  features = self.info.features
  generator = mocking.RandomFakeGenerator(features, NUM_MOCK_EXAMPLES,
                                          constant_dynamic_shape=True)
  skipped = [k for k, v in (decoders or {}).items() if isinstance(v, tfds.decode.SkipDecoding)]

  def examples():
    for ex in generator:
      for key in skipped:
        ex[key] = features[key].encode_example(ex[key])
      yield ex
  specs = dict(features.get_tensor_info())
  for key in skipped:
    specs[key] = features[key].get_serialized_info()
  signature = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), specs)
  return tf.data.Dataset.from_generator(examples, output_signature=signature)


@pytest.fixture(scope="module")
def metadata_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds_metadata"))
  written = set()
  for name in EXTERNAL_TASKS:
    task = tasks.get_task(name)
    if task.tfds_spec not in written:
      _write_metadata(task, data_dir)
      written.add(task.tfds_spec)
  return data_dir


def _mock(data_dir):
  return tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES, data_dir=data_dir,
                                policy=tfds.testing.MockPolicy.USE_FILES,
                                as_dataset_fn=_fake_as_dataset)


def test_registry_has_the_19_vtab_tasks_in_their_groups():
  assert tasks.list_tasks(suite="vtab") == list(tasks.VTAB_TASKS)
  assert tasks.list_tasks(group="natural", suite="vtab") == [
      "caltech101", "cifar100", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"]
  assert tasks.list_tasks(group="specialized") == [
      "patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"]
  assert tasks.list_tasks(group="structured") == [
      "clevr_count", "clevr_distance", "dmlab", "kitti_distance", "dsprites_location",
      "dsprites_orientation", "smallnorb_azimuth", "smallnorb_elevation"]
  assert tasks.list_tasks(suite="dat") == ["dat_cifar10", "dat_food101", "dat_oxford_iiit_pet",
                                           "dat_cars196", "dat_caltech_birds2011"]
  for name in tasks.list_tasks():
    assert set(tasks.STANDARD_SPLITS) <= set(tasks.get_task(name).splits)


def test_unknown_names_list_the_known_ones():
  with pytest.raises(ValueError, match=r"Unknown task 'imagenet'. Known tasks: \['caltech101', "
                                       r"'cifar100', .*'dmlab', .*'digits'\]"):
    tasks.get_task("imagenet")
  with pytest.raises(ValueError, match=r"Unknown suite 'x'. Known suites: \['vtab', 'dat', "
                                       r"'offline'\]"):
    tasks.list_tasks(suite="x")


@pytest.mark.parametrize("name", EXTERNAL_TASKS)
def test_task_matches_its_tfds_builder_and_loads(name, metadata_dir):
  task = tasks.get_task(name)
  with _mock(metadata_dir):
    builder = task.builder(metadata_dir)
    features = builder.info.features
    assert task.image_key in features.keys()
    if task.label_key is not None:
      assert features[task.label_key].num_classes == task.num_classes
    sizes = {split: builder.info.splits[task.tfds_split(split, builder)].num_examples
             for split in task.splits}
    assert sizes["train800"] == 800 and sizes["val200"] == 200
    assert sizes["train800val200"] == 1000
    assert sizes["test"] > 200
    if task.suite == "dat":
      assert sizes["train1k"] == 1000
    images, labels = next(iter(task.load("train800", metadata_dir, image_size=(12, 10),
                                         batch_size=NUM_MOCK_EXAMPLES)))
  assert images.dtype == tf.float32 and images.shape == (NUM_MOCK_EXAMPLES, 12, 10, 3)
  assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
  assert labels.dtype == tf.int32
  assert all(0 <= int(label) < task.num_classes for label in labels)


@pytest.mark.parametrize("name, expected", [
    ("caltech101", {"val200": "train[2754:2954]", "test": "test",
                    "train800val200": "train[:800]+train[2754:2954]"}),
    ("oxford_iiit_pet", {"val200": "train[2944:3144]", "test": "test"}),
    ("svhn", {"val200": "train[65931:66131]"}),
    ("eurosat", {"val200": "train[16200:16400]", "test": "train[21600:]"}),
    ("resisc45", {"val200": "train[18900:19100]", "test": "train[25200:]"}),
    ("clevr_count", {"val200": "train[63000:63200]", "test": "validation"}),
    ("dsprites_location", {"val200": "train[589824:590024]", "test": "train[663552:]"}),
    ("smallnorb_azimuth", {"val200": "test[:200]", "test": "test[50%:]",
                           "train800val200": "train[:800]+test[:200]"}),
    ("cifar100", {"val200": "train[45000:45200]"}),
    ("dat_food101", {"val200": "train[800:1000]", "test": "validation"}),
])
def test_split_strings_follow_task_adaptation(name, expected, metadata_dir):
  task = tasks.get_task(name)
  with _mock(metadata_dir):
    builder = task.builder(metadata_dir)
    assert {s: task.tfds_split(s, builder) for s in expected} == expected
  assert task.splits["train800"] == "train[:800]"


def _objects(**columns):
  return {"objects": {k: tf.constant(v) for k, v in columns.items()}}


def test_clevr_label_functions_on_hand_made_scenes():
  five = _objects(size=[0, 1, 1, 0, 1], pixel_coords=[[1.0, 2.0, 12.0]] * 5)
  assert int(tasks.clevr_count_label(five)) == 2
  assert int(tasks.clevr_count_label(_objects(size=[1] * 10))) == 7
  # Closest depth 8.7: thresholds below it are 0, 8, 8.5 -> class 2.
  scene = _objects(pixel_coords=[[10.0, 20.0, 9.6], [50.0, 40.0, 8.7], [1.0, 1.0, 11.0]])
  assert int(tasks.clevr_distance_label(scene)) == 2
  assert int(tasks.clevr_distance_label(_objects(pixel_coords=[[0.0, 0.0, 7.9]]))) == 0
  assert int(tasks.clevr_distance_label(_objects(pixel_coords=[[0.0, 0.0, 10.5]]))) == 5
  assert int(tasks.clevr_distance_label(_objects(pixel_coords=[[0.0, 0.0, 9.0]]))) == 2


def test_kitti_distance_label_on_hand_made_scenes():
  # Types: 0 Car, 1 Van, 2 Truck, 3 Pedestrian. The pedestrian at 5 m is ignored.
  scene = _objects(type=[0, 3, 2], location=[[1.0, 1.0, 25.0], [0.0, 0.0, 5.0],
                                             [2.0, 0.0, 14.0]])
  assert int(tasks.kitti_distance_label(scene)) == 1  # nearest vehicle 14 m: 8 < 14 <= 20
  near = _objects(type=[1], location=[[0.0, 0.0, 6.5]])
  assert int(tasks.kitti_distance_label(near)) == 0
  far = _objects(type=[0, 5], location=[[0.0, 0.0, 40.0], [0.0, 0.0, 3.0]])
  assert int(tasks.kitti_distance_label(far)) == 2
  none = _objects(type=[3, 5], location=[[0.0, 0.0, 4.0], [0.0, 0.0, 9.0]])
  assert int(tasks.kitti_distance_label(none)) == 3  # no vehicle: depth 1000


def test_dsprites_and_smallnorb_labels_and_images():
  location = tasks.get_task("dsprites_location").label_fn
  orientation = tasks.get_task("dsprites_orientation").label_fn
  assert [int(location({"label_x_position": tf.constant(v, tf.int64)}))
          for v in (0, 1, 2, 17, 31)] == [0, 0, 1, 8, 15]
  assert [int(orientation({"label_orientation": tf.constant(v, tf.int64)}))
          for v in (0, 2, 3, 5, 24, 39)] == [0, 0, 1, 2, 9, 15]
  image = tf.constant([[[0], [1]]], tf.uint8)
  np.testing.assert_array_equal(tasks.dsprites_image(image), [[[0], [255]]])
  smallnorb = tasks.get_task("smallnorb_elevation")
  out = smallnorb.extract({"image": tf.zeros([2, 2, 1], tf.uint8),
                           "label_elevation": tf.constant(4, tf.int64)})
  assert int(out["label"]) == 4 and out["label"].dtype == tf.int32


def test_versions_tfds_cannot_generate_fail_with_instructions(tmp_path):
  with pytest.raises(tasks.DataNotPreparedError,
                     match=r"kitti version 3.1.0 .* not prepared in .*only generates versions "
                           r"\['3.3.0'\].*older tensorflow-datasets release"):
    tasks.get_task("kitti_distance").load("test", str(tmp_path))
  with pytest.raises(tasks.DataNotPreparedError,
                     match=r"oxford_iiit_pet:3.\*.\*.*cannot build.*only: 4.0.0.*older "
                           r"tensorflow-datasets release"):
    tasks.get_task("oxford_iiit_pet").load("test", str(tmp_path))
  with pytest.raises(tasks.DataNotPreparedError, match=r"dmlab version 2.0.1 .*tfds build "
                                                       r"'dmlab:2.0.1'"):
    tasks.get_task("dmlab").load("test", str(tmp_path))


def test_old_version_present_in_the_data_dir_is_loaded(metadata_dir):
  with _mock(metadata_dir):
    builder = tasks.get_task("oxford_iiit_pet").builder(metadata_dir)
    assert str(builder.version) == "3.2.0"
    builder = tasks.get_task("kitti_distance").builder(metadata_dir)
    assert str(builder.version) == "3.1.0"


OFFLINE_EXPECTED = {  # name -> (classes, test examples)
    "shapes_fine_tiny": (5, 200), "shapes_mixed_tiny": (10, 200), "shapes_count_tiny": (6, 200),
    "digits": (10, 597),
}


@pytest.mark.parametrize("name", sorted(OFFLINE_EXPECTED))
def test_offline_tasks_load_from_built_data(name, offline_data_dir):
  task = tasks.get_task(name)
  num_classes, num_test = OFFLINE_EXPECTED[name]
  assert task.num_classes == num_classes and task.group == "offline"
  assert [task.num_examples(s, offline_data_dir) for s in tasks.STANDARD_SPLITS] == [
      800, 200, 1000, num_test]
  images, labels = [], []
  for x, y in task.load("train800val200", offline_data_dir, image_size=20, batch_size=256):
    images.append(x.numpy())
    labels.append(y.numpy())
  images, labels = np.concatenate(images), np.concatenate(labels)
  assert images.shape == (1000, 20, 20, 3) and images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
  assert labels.dtype == np.int32 and set(labels.tolist()) == set(range(num_classes))
  # train800val200 holds exactly the examples of train800 and val200 (tfds interleaves them).
  def examples(split):
    return sorted((int(y), x.tobytes()) for x, y in task.load(
        split, offline_data_dir, image_size=20).as_numpy_iterator())
  combined = sorted((int(y), x.tobytes()) for x, y in zip(images, labels))
  assert combined == sorted(examples("train800") + examples("val200"))


def test_offline_load_matches_tfds_images_and_shuffles_deterministically(offline_data_dir):
  task = tasks.get_task("digits")
  raw = tfds.load("tfexperts_digits", split="validation[:200]", data_dir=offline_data_dir)
  raw = [(ex["image"], ex["label"]) for ex in raw.as_numpy_iterator()]
  loaded = [(x, y) for x, y in task.load("val200", offline_data_dir).as_numpy_iterator()]
  assert len(loaded) == 200
  for (image, label), (x, y) in zip(raw, loaded):
    assert x.shape == (32, 32, 3) and int(label) == int(y)
    np.testing.assert_allclose(x, image / 255.0, atol=1e-6)
  shuffled = lambda seed: [int(y) for _, y in task.load(
      "val200", offline_data_dir, shuffle_buffer=200, seed=seed).as_numpy_iterator()]
  assert shuffled(1) == shuffled(1) != shuffled(2)
  assert sorted(shuffled(1)) == sorted(int(y) for _, y in raw)


def test_augmented_training_pipeline(offline_data_dir):
  task = tasks.get_task("shapes_fine_tiny")
  ds = task.load("train800", offline_data_dir, image_size=24, augment=True, batch_size=32,
                 shuffle_buffer=100, repeat=True, drop_remainder=True, seed=3)
  x, y = next(iter(ds))
  assert x.shape == (32, 24, 24, 3) and y.shape == (32,)
  assert tasks.train_preprocess(24) == ("resize_random_crop((30, 30), (24, 24))|flip_lr|"
                                        "value_range(0, 1)")
  with pytest.raises(ValueError, match="Pass either `preprocess` or `image_size`/`augment`"):
    task.load("train800", offline_data_dir, image_size=24, preprocess="value_range(0, 1)")
  with pytest.raises(ValueError, match=r"Unknown split 'train1k' for task 'shapes_fine_tiny'. "
                                       r"Known splits: \['train800', 'val200', 'train800val200', "
                                       r"'test'\]"):
    task.load("train1k", offline_data_dir)


def test_missing_offline_data_says_how_to_build_it(tmp_path):
  with pytest.raises(tasks.DataNotPreparedError, match=r"prepare_offline_datasets\(data_dir, "
                                                       r"\['tfexperts_shapes_fine/demo'\]\)"):
    tasks.get_task("shapes_fine").load("test", str(tmp_path))
