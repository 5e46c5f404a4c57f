"""Small image folders written by the tests: PNG and JPEG files whose colour depends on the class."""
import os

import numpy as np
from PIL import Image

COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "emu": (40, 40, 200)}
EXTENSIONS = {"cat": "jpg", "dog": "png", "emu": "JPEG"}  # any case is an image


def write_class(directory, name, count, seed):
  """Writes `count` 20x24 noisy images of class `name` into `directory`; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(count):
    pixels = np.asarray(COLOURS[name], float) + rng.normal(0, 25, (20, 24, 3))
    path = os.path.join(directory, f"{name}{i:02d}.{EXTENSIONS[name]}")
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(path)
    paths.append(path)
  return paths


def flat_folder(root, per_class=10):
  """`root/<class>/` for cat, dog, emu (plus a non-image file, ignored); returns `root`."""
  for seed, name in enumerate(sorted(COLOURS)):
    write_class(os.path.join(root, name), name, per_class, seed)
  with open(os.path.join(root, "cat", "README.txt"), "w") as f:
    f.write("not an image")
  return root


def split_folder(root, train=8, test=3):
  """`root/train/<class>/` and `root/test/<class>/` for cat, dog, emu; returns `root`."""
  for seed, name in enumerate(sorted(COLOURS)):
    write_class(os.path.join(root, "train", name), name, train, seed)
    write_class(os.path.join(root, "test", name), name, test, 100 + seed)
  return root
