"""A small multi-label tfds dataset for tests, and its hand-written "is-a" hierarchy."""
import numpy as np
import tensorflow_datasets as tfds

# A hand-written "is-a" DAG with two parents for some classes and a class ("bird") that is an
# inner node. The dataset classes are ML_CLASSES (leaves and one inner node).
PARENTS = {
    "thing": [],
    "animal": ["thing"], "vehicle": ["thing"], "flyer": ["thing"], "pet": ["thing"],
    "mammal": ["animal"], "bird": ["animal"],
    "dog": ["mammal", "pet"], "cat": ["mammal", "pet"], "bat": ["mammal", "flyer"],
    "sparrow": ["bird", "flyer"], "penguin": ["bird"],
    "car": ["vehicle"], "plane": ["vehicle", "flyer"],
}
ML_CLASSES = ("dog", "cat", "bat", "sparrow", "penguin", "bird", "car", "plane")
ML_NUM_EXAMPLES = 60


def ml_example(index):
  """Example `index` of the multi-label test dataset: its single label and its label set."""
  rng = np.random.default_rng([7, index])
  labels = sorted(rng.choice(len(ML_CLASSES), size=rng.integers(0, 4), replace=False).tolist())
  return int(rng.integers(len(ML_CLASSES))), labels


def ml_image(index):
  """8x8 RGB image whose first pixel encodes `index` (PNG is lossless, so it survives)."""
  image = np.full((8, 8, 3), 128, np.uint8)
  image[0, 0] = (index % 256, index // 256, 0)
  return image


class TfexpertsTestMultilabel(tfds.core.GeneratorBasedBuilder):
  """Test-only dataset with the same labels stored three ways: single, sequence, multi-hot."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "picture": tfds.features.Image(shape=(8, 8, 3)),
        "label": tfds.features.ClassLabel(names=ML_CLASSES),
        "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=ML_CLASSES)),
        "labels_multi_hot": tfds.features.Tensor(shape=(len(ML_CLASSES),), dtype=np.bool_),
    }))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(ML_NUM_EXAMPLES):
      single, labels = ml_example(i)
      hot = np.zeros(len(ML_CLASSES), bool)
      hot[labels] = True
      yield i, {"picture": ml_image(i), "label": single, "labels": labels,
                "labels_multi_hot": hot}
