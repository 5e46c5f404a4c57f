"""Shared fixtures (registered in tests/conftest.py): a tiny fake training workdir and its export.

The workdir and its export are built once per test session, by the first pytest-xdist worker that
needs them, and shared by the others (the export traces and saves 8 modules in a child process;
`models` is seeded, so every worker's models equal the saved ones). Tests only read them; one that
writes takes a private copy.
"""
import dataclasses
import os

import numpy as np
import pytest

from tests import processes
from tests import session_shared
from tfexperts import artifacts
from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.models import finished
from tfexperts.models import patches

RESOLUTION = 32
CLASSES = list("abcdef")
EXPERTS = [
    {"expert_id": 0, "name": "animal", "node": "animal", "num_images": 10, "slices": "semantic",
     "label_prior": [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]},
    {"expert_id": 1, "name": "thing/red", "node": "thing/red", "num_images": 7,
     "slices": "semantic", "label_prior": [0.0, 0.0, 0.25, 0.75, 0.0, 0.0]},
]
COMMON = {"upstream_dataset": "tfexperts_shapes/tiny", "upstream_split": "train",
          "num_upstream_images": 17, "num_upstream_classes": 6, "upstream_class_names": CLASSES,
          "preset": "tiny", "resolution": RESOLUTION, "input_range": [0.0, 1.0], "steps": 3,
          "multi_label": False, "model_overrides": {}}


def images(count=4, seed=0):
  """Float32 `[count, 32, 32, 3]` images in [0, 1]."""
  return np.random.default_rng(seed).uniform(size=(count, RESOLUTION, RESOLUTION, 3)).astype(
      "float32")


def _perturb(variables, rng, scale):
  for v in variables:
    center = 1.0 if v.path.endswith("gamma") else 0.0
    v.assign(rng.normal(center, scale, v.shape).astype("float32"))


def tiny_baseline(seed=1, num_classes=6):
  """A built tiny `ResNetV2` with random non-trivial weights (head included)."""
  model = bit.create_model("tiny", num_classes=num_classes)
  _perturb(model.weights, np.random.default_rng(seed), 0.3)
  return model


@dataclasses.dataclass
class Models:
  """The models of the fake training run, and their outputs on `images(4)`."""
  baseline: object
  adapter_bank: object
  patch_bank: object
  epn: object
  outputs: dict  # name -> {"pre_logits": ..., "logits": ...} as numpy; experts by module name


@pytest.fixture(scope="session")
def models():
  """A baseline with a head, an adapter bank and a patch bank of 2 experts on it, and an EPN."""
  rng = np.random.default_rng(2)
  baseline = tiny_baseline()
  adapter_bank = adapters.create_adapter_experts(baseline, 2)
  _perturb(adapter_bank.trainable_weights, rng, 0.2)
  patch_bank = patches.create_patch_bank(baseline, 2)
  for v in patch_bank.trainable_weights:
    v.assign(v.numpy() + rng.normal(0.0, 0.2, v.shape).astype("float32"))
  epn = tiny_baseline(seed=3, num_classes=2)
  x = images(4)
  numpy = lambda outputs: {k: v.numpy() for k, v in outputs.items()}  # pylint: disable=g-long-lambda
  outputs = {"baseline": numpy(baseline(x)), "epn": numpy(epn(x))}
  for e, name in enumerate(["animal", "thing_red"]):
    ids = np.full(4, e, "int32")
    outputs[f"adapter_{name}"] = numpy(adapter_bank(x, ids))
    outputs[f"patch_{name}"] = numpy(patch_bank(x, ids))
  return Models(baseline, adapter_bank, patch_bank, epn, outputs)


@dataclasses.dataclass
class Workdir:
  path: str
  baseline: str
  adapter: str
  patch: str
  epn: str


def _save_workdir(paths, models):
  record = lambda **kw: artifacts.ModelRecord.from_json({**COMMON, **kw})  # noqa: E731
  finished.save_final(models.baseline, paths.baseline, record(kind="baseline", name="baseline"))
  finished.save_final(models.adapter_bank, paths.adapter,
                      record(kind="adapter_bank", name="adapter_bank", experts=EXPERTS))
  finished.save_final(models.patch_bank, paths.patch,
                      record(kind="patch_bank", name="patch_bank", experts=EXPERTS))
  finished.save_final(models.epn, paths.epn, record(
      kind="epn", name="epn", multi_label=True,
      domains=[{"expert_id": e["expert_id"], "name": e["name"], "num_images": e["num_images"]}
               for e in EXPERTS]))


def _workdir_paths(root):
  return Workdir(root, *(os.path.join(root, k, "final")
                         for k in ("baseline", "adapter", "patch", "epn")))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory, request):
  """A training workdir as bin/train_experts leaves it: baseline, two banks, the EPN of `models`
  (which only the worker that saves them builds here)."""
  content = session_shared.build_once(tmp_path_factory, "workdir", lambda path: _save_workdir(
      _workdir_paths(os.path.join(path, "shapes_run")), request.getfixturevalue("models")))
  paths = _workdir_paths(os.path.join(content, "shapes_run"))
  before = session_shared.fingerprint(paths.path)
  yield paths
  session_shared.assert_unchanged(paths.path, before)


def run_binary(args, check=True):
  """Runs bin/export_experts with `args`; returns the CompletedProcess."""
  return processes.run_binary("export_experts", args, check_exit=check)


@dataclasses.dataclass
class Exported:
  export_dir: str
  collection_dir: str
  flagfile: str
  stdout: str


def write_flagfile(workdir_path, export_dir):
  """Writes the flags that export `workdir_path` into `export_dir` to a file beside `export_dir`;
  returns its path."""
  flagfile = os.path.join(os.path.dirname(export_dir), "export_flags.txt")
  with open(flagfile, "w") as f:
    f.write(f"--workdir={workdir_path}\n--export_dir={export_dir}\n")
  return flagfile


def _export(workdir_path, root):
  export_dir = os.path.join(root, "export")
  proc = run_binary([f"--flagfile={write_flagfile(workdir_path, export_dir)}"])
  with open(os.path.join(root, "stdout.txt"), "w") as f:
    f.write(proc.stdout)


@pytest.fixture(scope="session")
def exported(workdir, tmp_path_factory):
  """The workdir exported by the binary (flags given through --flagfile), once per session."""
  root = session_shared.build_once(tmp_path_factory, "exported",
                                   lambda path: _export(workdir.path, path))
  export_dir = os.path.join(root, "export")
  with open(os.path.join(root, "stdout.txt")) as f:
    stdout = f.read()
  before = session_shared.fingerprint(export_dir)
  yield Exported(export_dir, os.path.join(export_dir, "shapes_run"),
                 os.path.join(root, "export_flags.txt"), stdout)
  session_shared.assert_unchanged(export_dir, before)
