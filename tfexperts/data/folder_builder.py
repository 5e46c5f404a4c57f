"""Image folders as tfds builders with VTAB-1k splits (`tfds.folder_dataset.ImageFolder`).

Two layouts (file extensions .jpg, .jpeg, .png, any case; other files are ignored):

    PATH/<class>/<image>                        flat: every image is a training image
    PATH/train/<class>/<image>  [PATH/test/<class>/<image>]

Classes are the class folder names, sorted; test classes must be training classes. The training
images are sorted by path and shuffled with `seed` before the VTAB-1k splits (`vtab_splits`) take
their ranges, so the class order of the directory does not leak into train800 / val200 / test.
`FolderBuilder` is tfds's `ImageFolder` with those derived splits: `as_dataset("train800")` reads
and decodes the files as `ImageFolder` does. Before a split is read for the first time its files
are decoded once, and unreadable ones are reported by name (`UserError`).
"""
import hashlib
import os
import random

import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import splits as split_lib
from tensorflow_datasets.core.folder_dataset import image_folder

from tfexperts.data import vtab_splits
from tfexperts.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_DIRS = ("train", "test")
_MAX_LISTED = 10
_ImageFolder = tfds.folder_dataset.ImageFolder


def _subdirs(directory):
  return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory)
                if tf.io.gfile.isdir(os.path.join(directory, name)))


def _images(directory):
  return sorted(os.path.join(directory, name) for name in tf.io.gfile.listdir(directory)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and not tf.io.gfile.isdir(os.path.join(directory, name)))


def detect_layout(root):
  """"split" when `root/train/` holds class folders, else "flat"; UserError on a bad layout."""
  if not tf.io.gfile.isdir(root):
    raise UserError(f"Image folder {root!r} does not exist or is not a directory.")
  subdirs = _subdirs(root)
  if "train" in subdirs and _subdirs(os.path.join(root, "train")):
    unexpected = [d for d in subdirs if d not in SPLIT_DIRS]
    if unexpected:
      raise UserError(f"Image folder {root!r} has train/ with class folders, so only train/ and "
                      f"test/ may sit beside it; found also {unexpected}.")
    return "split"
  if not subdirs:
    raise UserError(f"Image folder {root!r} has no class folders: expected PATH/<class>/*.jpg|png "
                    "or PATH/train/<class>/ (and optionally PATH/test/<class>/).")
  return "flat"


def _scan_split(directory, what):
  """`{class: [image paths]}` of the class folders in `directory`."""
  by_class = {name: _images(os.path.join(directory, name)) for name in _subdirs(directory)}
  empty = [name for name, paths in by_class.items() if not paths]
  if empty:
    raise UserError(f"{what}: class folders without .jpg/.jpeg/.png images: {empty}.")
  if not by_class:
    raise UserError(f"{what} {directory!r} has no class folders.")
  return by_class


def _examples(by_class):
  # ImageFolder's own example record (image path, class name).
  return [image_folder._Example(path, label)  # pylint: disable=protected-access
          for label, paths in sorted(by_class.items()) for path in paths]


class FolderBuilder(_ImageFolder, skip_registration=True):
  """tfds's `ImageFolder` over either layout, with the VTAB-1k splits as its splits.

  Attributes (beyond the builder's): `root`, `layout` ("flat" / "split"), `seed`, `class_names`,
  `ranges` (`{split: vtab_splits.SplitRange}` over the "train" / "test" image lists), `note` (the
  split rule sentence) and `fingerprint` (hex digest of the root, seed and file list).
  """

  def __init__(self, root, seed=0):
    root = os.path.abspath(os.path.expanduser(root)) if "://" not in root else root.rstrip("/")
    self.root, self.seed = root, seed
    self.layout = detect_layout(root)
    self._image_shape = self._image_dtype = None
    super(_ImageFolder, self).__init__(data_dir=root)  # DatasetBuilder's: no scan of root
    self._data_dir = root
    if self.layout == "flat":
      train, test = _scan_split(root, f"Image folder {root!r}"), None
    else:
      train = _scan_split(os.path.join(root, "train"), f"Image folder {root!r}, train/")
      test_dir = os.path.join(root, "test")
      test = (_scan_split(test_dir, f"Image folder {root!r}, test/")
              if tf.io.gfile.isdir(test_dir) else None)
      unknown = sorted(set(test or ()) - set(train))
      if unknown:
        raise UserError(f"Image folder {root!r}: test/ has classes that train/ lacks: {unknown}. "
                        f"Training classes: {sorted(train)}")
    self.class_names = sorted(train)
    sources = {"train": _examples(train)}
    random.Random(seed).shuffle(sources["train"])  # sorted by class, then path, before this
    if test is not None:
      sources["test"] = _examples(test)
    sizes = {name: len(examples) for name, examples in sources.items()}
    self.ranges, self.note = vtab_splits.vtab1k_splits(sizes, f"Image folder {root!r}")
    self.sizes = sizes
    self._split_examples = {
        name: sources[r.source][r.start:r.end] for name, r in self.ranges.items()}
    self.info.features["label"].names = self.class_names
    self.info.set_splits(split_lib.SplitDict([
        split_lib.SplitInfo(name=name, shard_lengths=[len(examples)], num_bytes=0)
        for name, examples in self._split_examples.items()]))
    listing = "\n".join(os.path.relpath(e.image_path, root) for e in _examples(train))
    listing += "\n--test--\n" + "\n".join(
        os.path.relpath(e.image_path, root) for e in _examples(test or {}))
    self.fingerprint = hashlib.sha1(f"{root}\n{seed}\n{listing}".encode()).hexdigest()
    self._checked = set()

  def describe(self):
    """`{split: where it comes from}` in tfds split syntax over this folder's image lists."""
    source = {"train": "train/" if self.layout == "split" else "all images",
              "test": "test/"}
    return {name: f"{r.tfds()} of {source[r.source]} (shuffled, seed {self.seed})"
            if r.source == "train" else r.tfds() + "/" for name, r in self.ranges.items()}

  def check_readable(self, split):
    """Decodes every not yet checked image of `split`; UserError naming unreadable files."""
    paths = [e.image_path for e in self._split_examples[split] if e.image_path not in self._checked]
    if not paths:
      return

    def decode(path):
      image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
      return path, tf.shape(image)[0]

    readable = tf.data.Dataset.from_tensor_slices(paths).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    good = {p.decode() for p, _ in readable.as_numpy_iterator()}
    bad = [p for p in paths if p not in good]
    if bad:
      more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
      raise UserError(f"Image folder {self.root!r}: {len(bad)} unreadable image file(s) (not a "
                      f"decodable JPEG/PNG): {bad[:_MAX_LISTED]}{more}. Fix or remove them.")
    self._checked.update(paths)

  def _as_dataset(self, split, shuffle_files=False, decoders=None, read_config=None):
    split = str(split)
    if split not in self._split_examples:
      raise UserError(f"Unknown split {split!r} of image folder {self.root!r}. Splits: "
                      f"{list(self._split_examples)}")
    self.check_readable(split)
    return super()._as_dataset(split, shuffle_files=shuffle_files, decoders=decoders,
                               read_config=read_config)

  def get(self, data_dir=None, download=False):
    """This builder (the arguments of `tfds.builder` do not apply to a folder); see `Task`."""
    del data_dir, download
    return self
