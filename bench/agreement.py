"""Does bfloat16 (or OpenVINO) change kNN selection's pick on your pool? Verify before switching.

For every expert of `--experts` and every task of `--tasks`, the train800 split is embedded with
TensorFlow at float32 (the reference: what selection runs by default) and with each of
`--variants` (engine:precision), as bin/select_expert embeds it (`select.agreement`, on
`selection.FeatureSource` and `selection.score`), and a markdown table is printed:
  per task and expert: the reference's leave-one-out kNN accuracy (%), each variant's, their
    difference in points, and the features' max relative error (max |variant - reference| /
    max |reference|); a variant that fell back (OpenVINO could not convert a module: TensorFlow;
    a module not rebuilt at a reduced precision: float32) says what ran instead;
  per task and variant: the largest difference (points and images) and whether it is within 0.5
    points, the reference's pick (either of its top two when they are within 0.5 points), the
    variant's pick, same pick yes/NO.
Issue 26 asks for differences within 0.5 points and the same pick on every task; the run ends
with status 1 when some variant misses either on some task.

Usage: python bench/agreement.py --experts export/demo --tasks shapes_fine,digits
         --data_dir demo_work/tfds [--resolution 64] [--variants tensorflow:bfloat16,
         openvino:bfloat16] [--cache_dir DIR] [--batch 256]
--experts is a collection directory, or a comma-separated list of module and collection
directories (as bin/select_expert's --experts); --resolution defaults to each expert's metadata
resolution; --cache_dir (default: a temporary directory) keeps the features and OpenVINO's
converted models for a later run. OpenVINO variants need `pip install tfexperts[openvino]`.
"""
import argparse
import os
import sys
import time

from _common import blas_kernel  # bench/ is the script's directory
from tfexperts import defaults
from tfexperts.select import agreement
from tfexperts.select import selection


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experts", required=True,
                      help="collection directory, or comma-separated module/collection dirs")
  parser.add_argument("--tasks", required=True, help="comma-separated task names")
  parser.add_argument("--data_dir", required=True, help="tfds data dir of the tasks")
  parser.add_argument("--resolution", type=int, default=None,
                      help="image size for every expert (default: each one's metadata)")
  parser.add_argument("--variants", default="tensorflow:bfloat16,openvino:bfloat16",
                      help="comma-separated engine:precision pairs compared with "
                      f"{agreement.REFERENCE.engine}:{agreement.REFERENCE.precision}")
  parser.add_argument("--cache_dir", default=None,
                      help="feature cache (and OpenVINO IR cache); default: a temporary dir")
  parser.add_argument("--batch", type=int, default=defaults.EMBED_BATCH_SIZE,
                      help="images per embedding batch")
  args = parser.parse_args()
  variants = [agreement.parse_variant(v) for v in args.variants.split(",") if v]
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; BLAS: "
        f"{blas_kernel()}", flush=True)
  start = time.perf_counter()
  candidates = selection.load_candidates(args.experts)
  result = agreement.measure(candidates, [t for t in args.tasks.split(",") if t], args.data_dir,
                             resolution=args.resolution, variants=variants,
                             cache_dir=args.cache_dir, batch_size=args.batch)
  print(f"\n{len(candidates.experts)} experts, {len(result.tasks)} tasks, reference "
        f"{result.reference.name}, resolution "
        f"{args.resolution or 'each expert metadata'}; {time.perf_counter() - start:.0f}s\n")
  print(agreement.markdown(result), end="")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  return 0 if result.agrees else 1


if __name__ == "__main__":
  sys.exit(main())
