"""tfds builders of the procedural shapes datasets: one upstream dataset and three downstream tasks.

Nothing is downloaded: images are drawn by `render` from a per-example seed
`[config.seed, dataset id, split id, index]`, so a config always yields the same images whatever
the generation order. Builders register with tfds on import (see `tfexperts.data.builders`).

* `tfexperts_shapes` (upstream): 25 leaf classes in 5 branches (see `taxonomy`), splits `train`
  and `validation`; features `image`, `label` (leaf) and `branch`. Its hierarchy is the JSON file
  `taxonomy.hierarchy_path()`.
* `tfexperts_shapes_fine`: 5 new glyph leaves (fine-grained inside the `glyph` branch).
* `tfexperts_shapes_mixed`: 10 upstream leaves, two of each branch.
* `tfexperts_shapes_count`: 1..6 small objects of any leaf; label = count - 1 (structured).
Downstream tasks have splits `train`, `validation` and `test` with balanced labels.

Configs: `tiny` (32x32, for tests) and `demo` (64x64, for the CPU demo).
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from tfexperts.data.builders import render
from tfexperts.data.builders import taxonomy

_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
_HOMEPAGE = "https://arxiv.org/abs/2009.13239"


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  """Upstream config: image side in pixels, images per class per split, and the seed."""
  image_size: int = 32
  train_per_class: int = 20
  validation_per_class: int = 4
  seed: int = 0


class TfexpertsShapes(tfds.core.GeneratorBasedBuilder):
  """Upstream shapes: 25 leaves of a 3-level hierarchy (root, 5 branches, 25 leaves)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      ShapesConfig(name="tiny", image_size=32, train_per_class=20, validation_per_class=4,
                   description="32x32, 20 train + 4 validation images per class (500 + 100)."),
      ShapesConfig(name="demo", image_size=64, train_per_class=240, validation_per_class=20,
                   description="64x64, 240 train + 20 validation images per class "
                               "(6000 + 500)."),
  ]

  def _info(self):
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        description="Procedurally drawn shapes under a label hierarchy (tfexperts upstream).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3)),
            "label": tfds.features.ClassLabel(names=taxonomy.UPSTREAM_CLASSES),
            "branch": tfds.features.ClassLabel(names=list(taxonomy.BRANCHES)),
        }),
        supervised_keys=("image", "label"),
        homepage=_HOMEPAGE,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    config = self.builder_config
    return {"train": self._generate_examples("train", config.train_per_class),
            "validation": self._generate_examples("validation", config.validation_per_class)}

  def _generate_examples(self, split, per_class):
    config = self.builder_config
    branches = list(taxonomy.BRANCHES)
    for label, leaf in enumerate(taxonomy.UPSTREAM_CLASSES):
      for i in range(per_class):
        rng = np.random.default_rng([config.seed, 0, _SPLIT_IDS[split], label, i])
        yield f"{leaf}_{i:06d}", {
            "image": render.render_single(leaf, config.image_size, rng),
            "label": label,
            "branch": branches.index(taxonomy.branch_of(leaf)),
        }


@dataclasses.dataclass
class ShapesTaskConfig(tfds.core.BuilderConfig):
  """Downstream config: image side in pixels, examples per split, and the seed."""
  image_size: int = 32
  num_train: int = 1000
  num_validation: int = 200
  num_test: int = 200
  seed: int = 0


_TASK_CONFIGS = [
    ShapesTaskConfig(name="tiny", image_size=32, num_train=1000, num_validation=200, num_test=200,
                     description="32x32; 1000 train, 200 validation, 200 test."),
    ShapesTaskConfig(name="demo", image_size=64, num_train=1000, num_validation=200, num_test=1000,
                     description="64x64; 1000 train, 200 validation, 1000 test."),
]


class _ShapesTask(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the downstream tasks: balanced labels, splits train/validation/test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = _TASK_CONFIGS
  TASK_ID = 0  # distinct per task, part of every example's seed
  CLASS_NAMES = ()
  DESCRIPTION = ""

  def render(self, label, size, rng):
    """Returns the uint8 [size, size, 3] image of one example with class `label`."""
    raise NotImplementedError

  def _info(self):
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3)),
            "label": tfds.features.ClassLabel(names=self.CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage=_HOMEPAGE,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    config = self.builder_config
    return {"train": self._generate_examples("train", config.num_train),
            "validation": self._generate_examples("validation", config.num_validation),
            "test": self._generate_examples("test", config.num_test)}

  def _generate_examples(self, split, num_examples):
    config = self.builder_config
    for i in range(num_examples):
      label = i % len(self.CLASS_NAMES)
      rng = np.random.default_rng([config.seed, self.TASK_ID, _SPLIT_IDS[split], i])
      yield i, {"image": self.render(label, config.image_size, rng), "label": label}


class TfexpertsShapesFine(_ShapesTask):
  """Fine-grained task inside the `glyph` branch: 5 seven-segment digits upstream never shows."""

  TASK_ID = 1
  CLASS_NAMES = taxonomy.FINE_CLASSES
  DESCRIPTION = ("Fine-grained shapes task: glyphs 0, 5, 6, 8, 9 drawn like the upstream glyph "
                 "branch (which has only 1, 2, 3, 4, 7).")

  def render(self, label, size, rng):
    return render.render_single(self.CLASS_NAMES[label], size, rng)


class TfexpertsShapesMixed(_ShapesTask):
  """Task mixing branches: 10 upstream leaves, two of each branch."""

  TASK_ID = 2
  CLASS_NAMES = taxonomy.MIXED_CLASSES
  DESCRIPTION = "Shapes task mixing all five upstream branches (two leaves of each)."

  def render(self, label, size, rng):
    return render.render_single(self.CLASS_NAMES[label], size, rng)


class TfexpertsShapesCount(_ShapesTask):
  """Structured task: how many objects (1..6) are in the image; label = count - 1."""

  TASK_ID = 3
  CLASS_NAMES = tuple(str(n) for n in range(1, taxonomy.COUNT_MAX + 1))
  DESCRIPTION = "Structured shapes task: count 1-6 small objects (label = count - 1)."

  def render(self, label, size, rng):
    return render.render_count(label + 1, size, rng)
