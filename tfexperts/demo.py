"""The offline demo behind `make demo`: runs every stage of the pipeline that exists, on built-in data.

Usage: python -m tfexperts.demo [--workdir demo_work]
"""
import argparse
import os
import time

import numpy as np

from tfexperts.models import bit
from tfexperts.models import checkpoints


def _step(title):
  print(f"\n== {title}", flush=True)
  return time.perf_counter()


def run_backbone_stage(workdir):
  """Builds R50x1 and a tiny BiT model, round-trips the tiny one through a BiT `.npz`.

  Takes the demo's working directory; returns a dict of what was measured.
  """
  start = _step("Backbone: BiT ResNet-v2")
  r50 = bit.create_model("r50x1")
  print(f"R50x1 backbone: {r50.count_params():,} parameters, feature dim {r50.feature_dim}, "
        f"adapter places {r50.block_input_channels}")
  tiny = bit.create_model("tiny", num_classes=10)
  images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
  path = os.path.join(workdir, "checkpoints", "tiny.npz")
  names = checkpoints.save_npz(tiny, path)
  reloaded = bit.create_model("tiny", num_classes=10)
  checkpoints.load_npz(reloaded, path)
  same = np.array_equal(tiny(images)["pre_logits"], reloaded(images)["pre_logits"])
  print(f"tiny model: wrote {len(names)} arrays to {path}; reloaded outputs identical: {same}")
  print(f"({time.perf_counter() - start:.1f}s)")
  return {"r50x1_params": r50.count_params(), "npz_round_trip_identical": bool(same)}


def main(argv=None):
  """Parses demo flags, runs the stages in order and prints what each did."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="demo_work")
  args = parser.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  run_backbone_stage(args.workdir)
  print("\nDemo finished.")


def run():
  """Console-script entry point."""
  main()


if __name__ == "__main__":
  main()
