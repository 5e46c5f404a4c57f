"""tfds builder of scikit-learn's bundled handwritten digits: a small real-image task, offline.

`sklearn.datasets.load_digits()` holds 1797 8x8 grayscale images with values 0..16 (UCI optdigits
test set). They are scaled to 0..255, upsampled bilinearly to 32x32 and tiled to RGB uint8. A fixed
permutation (seed 0) splits them into `train` (1000), `validation` (200) and `test` (597).
"""
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

IMAGE_SIZE = 32
SPLIT_SIZES = {"train": 1000, "validation": 200}  # test: the remaining 597
_SEED = 0


def digits_arrays():
  """Returns (images uint8 [1797, 32, 32, 3], labels int64 [1797]) in scikit-learn's order."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top (heavy, only when building)
  digits = datasets.load_digits()
  images = []
  for image in digits.images:
    small = Image.fromarray((image * (255.0 / 16.0)).astype(np.float32), mode="F")
    big = np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
    gray = np.clip(np.round(big), 0, 255).astype(np.uint8)
    images.append(np.repeat(gray[..., None], 3, axis=-1))
  return np.stack(images), digits.target.astype(np.int64)


def split_indices():
  """Returns {split: indices into scikit-learn's order} of the fixed train/validation/test split."""
  order = np.random.default_rng(_SEED).permutation(1797)
  train_end = SPLIT_SIZES["train"]
  validation_end = train_end + SPLIT_SIZES["validation"]
  return {"train": order[:train_end], "validation": order[train_end:validation_end],
          "test": order[validation_end:]}


class TfexpertsDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits (8x8 upsampled to 32x32 RGB), 10 classes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self):
    return self.dataset_info_from_configs(
        description="scikit-learn's bundled handwritten digits, upsampled to 32x32 RGB.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/modules/generated/"
                 "sklearn.datasets.load_digits.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the data ships with scikit-learn
    images, labels = digits_arrays()
    return {split: self._generate_examples(images, labels, indices)
            for split, indices in split_indices().items()}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}
