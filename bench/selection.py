"""Selection throughput: K exported R50x1 experts scored on N images by bin/select_expert's path.

In one run (all in this process, on the same machine state):
  selection  K untrained R50x1 hub modules (one export, copied K times under distinct names)
             scored with the kNN proxy on N images of the offline task `shapes_fine_tiny` at
             --resolution px, through the code bin/select_expert runs (`selection.load_candidates`,
             `FeatureSource` with the feature cache off, `selection.score`): module loading and
             checks (the modules are tfexperts exports, so `tfexperts.hub.native` runs them as
             in-process models), decoding and resizing the images (once for all experts:
             `select.task_images`), embedding and the kNN; reported as images x experts per
             second, with the seconds spent loading modules and decoding images
  in-process our R50x1 as a tf.function on random images of the same shape and batch (the
             in-process model of bench/forward.py, without XLA like the feature path)
  by hand    what a user would write: for each module, `hub.KerasLayer(handle)` in a tf_keras
             model and `model.predict` on the same N images, already decoded into memory
The three are measured in `--rounds` interleaved rounds (in-process, selection, in-process, by
hand). Each round's selection rate is compared with the mean of the
in-process rates right before and after it and with the hand loop after it (the machine's speed
drifts by 20% or more within minutes here, so only neighbouring measurements compare); every
round's ratios are printed, then the round with the fastest selection in detail, and the largest
difference between the two paths' features of the first expert.

With `--engine=openvino` the selection embeds through `tfexperts.hub.openvino_engine` at
`--precision` (the other two measurements stay TensorFlow float32); converted models are cached in
a directory of this run, so the first round pays the conversions (printed) and later rounds start
warm, as a second `bin/select_expert` run does.

Usage: python bench/selection.py [--experts 4] [--images 256] [--resolution 224] [--batch 32]
                                 [--seconds 10] [--rounds 2] [--engine tensorflow|openvino]
                                 [--precision float32|bfloat16|float16]
Run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (`env -u OPENBLAS_CORETYPE -u
OPENBLAS_L2_SIZE python bench/selection.py`); the BLAS kernel NumPy runs is printed.
"""
import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forward  # noqa: E402  (bench/forward.py: the in-process measurement)
from _common import blas_kernel  # noqa: E402
from tfexperts.data import offline  # noqa: E402
from tfexperts.data import tasks  # noqa: E402
from tfexperts.hub import export as hub_export  # noqa: E402
from tfexperts.hub import metadata as metadata_lib  # noqa: E402
from tfexperts.hub import openvino_engine  # noqa: E402
from tfexperts.hub.tfhub import hub  # noqa: E402
from tfexperts.models import bit  # noqa: E402
from tfexperts.select import selection  # noqa: E402

TASK = "shapes_fine_tiny"
DATASET = "tfexperts_shapes_fine/tiny"


def export_experts(root, count, resolution):
  """Exports one untrained R50x1 and copies it to `count` modules named r50x1_<i>; handles."""
  model = bit.create_model("r50x1")
  first = os.path.join(root, "r50x1_0", "1")
  hub_export.export_expert(model, first, metadata_lib.build("full", "r50x1_0", model,
                                                            resolution=resolution))
  handles = [first]
  for i in range(1, count):
    path = os.path.join(root, f"r50x1_{i}", "1")
    shutil.copytree(first, path)
    metadata_lib.write(path, dataclasses.replace(metadata_lib.read(path), name=f"r50x1_{i}"))
    handles.append(path)
  return handles


def timed(owner, method):
  """Replaces `owner.method` by a wrapper appending each call's seconds to the returned list."""
  times, inner = [], getattr(owner, method)

  def wrapper(*args, **kwargs):
    start = time.perf_counter()
    try:
      return inner(*args, **kwargs)
    finally:
      times.append(time.perf_counter() - start)
  setattr(owner, method, wrapper)
  return times


def select_once(handles, task, data_dir, args):
  """One run of bin/select_expert's path (cache off): load, decode + resize once, embed, kNN.

  Returns a dict: `seconds` (wall), `parts` (features / knn seconds from `selection.score`),
  `part_seconds` (module loads, image decoding), `scores`, and the run's `source` and
  `candidates`.
  """
  start = time.perf_counter()
  candidates = selection.load_candidates(handles)
  source = selection.FeatureSource(task, "bench", data_dir, args.resolution, args.batch, None,
                                   engine=args.engine, engine_cache_dir=args.engine_cache_dir,
                                   precision=args.precision)
  parts = {"module loads": timed(source.native, "load"), "image decoding": timed(
      source.images, "_decode"), "engine loads (convert or cached IR)": timed(
          source, "_openvino_embedder")}
  scores, seconds = selection.score(candidates, source, ["knn"])
  elapsed = time.perf_counter() - start
  assert source.stats.images_embedded == args.images * args.experts, source.stats
  return {"seconds": elapsed, "parts": seconds, "scores": scores,
          "part_seconds": {name: sum(times) for name, times in parts.items()},
          "source": source, "candidates": candidates}


def by_hand(handles, images, batch):
  """The hand-written loop: hub.KerasLayer + tf_keras model.predict per module.

  Returns `(seconds, features of the first module)`.
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  outputs = []
  for handle in handles:
    model = tf_keras.Sequential([tf_keras.Input(images.shape[1:]), hub.KerasLayer(handle)])
    outputs.append(model.predict(images, batch_size=batch, verbose=0))
  return time.perf_counter() - start, outputs[0]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experts", type=int, default=4)
  parser.add_argument("--images", type=int, default=256)
  parser.add_argument("--resolution", type=int, default=224)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16",
                                                                  "float16"),
                      help="embedding precision of the selection path (select_expert "
                           "--precision); the in-process and by-hand rows stay float32")
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="measuring time of the in-process model")
  parser.add_argument("--rounds", type=int, default=2,
                      help="interleaved rounds of the three measurements")
  parser.add_argument("--engine", choices=openvino_engine.ENGINES, default="tensorflow",
                      help="engine of the selection path (select_expert --engine)")
  args = parser.parse_args()
  if args.rounds < 1:
    parser.error(f"--rounds must be at least 1. Received: --rounds={args.rounds}")
  openvino_engine.check_engine(args.engine)
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
  print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}", flush=True)

  with tempfile.TemporaryDirectory() as tmp:
    data_dir = os.path.join(tmp, "tfds")
    offline.prepare_offline_datasets(data_dir, DATASET, print_fn=None)
    base = tasks.get_task(TASK)
    task = dataclasses.replace(base, splits={**base.splits, "bench": f"train[:{args.images}]"})
    handles = export_experts(os.path.join(tmp, "export"), args.experts, args.resolution)
    args.engine_cache_dir = os.path.join(tmp, "engine_cache")

    model = bit.create_model("r50x1")
    spec = tf.TensorSpec((args.batch, args.resolution, args.resolution, 3), tf.float32)
    fn = tf.function(lambda x: model(x)["pre_logits"], input_signature=[spec])
    probe = tf.random.uniform(spec.shape)
    images = np.concatenate([x.numpy() for x, _ in task.load(
        "bench", data_dir, image_size=args.resolution, batch_size=args.batch)])

    # Interleaved rounds: in-process, selection, in-process, by hand. Each selection is compared
    # with the mean of the in-process rates right before and after it and with the hand loop
    # right after; the round with the fastest selection is reported in detail.
    inprocess_rates, runs, hand_runs = [], [], []
    for _ in range(args.rounds):
      before = forward.throughput(fn, probe, args.seconds)[0]
      runs.append(select_once(handles, task, data_dir, args))
      inprocess_rates.append((before, forward.throughput(fn, probe, args.seconds)[0]))
      hand_runs.append(by_hand(handles, images, args.batch))
    select_rates = [args.images * args.experts / run["seconds"] for run in runs]
    hand_rates = [args.images * args.experts / seconds for seconds, _ in hand_runs]
    adjacent = [(before + after) / 2 for before, after in inprocess_rates]
    best_round = int(np.argmax(select_rates))
    best = runs[best_round]
    select_seconds, seconds, parts = best["seconds"], best["parts"], best["part_seconds"]
    select_rate, inprocess_rate = select_rates[best_round], adjacent[best_round]
    hand_seconds, hand_rate = hand_runs[best_round][0], hand_rates[best_round]
    # Same features both ways (outside the timings): the first expert through the selection path.
    hand_features = hand_runs[-1][1]
    ours = best["source"].features(best["candidates"].experts[0]).features
    feature_diff = np.abs(ours - hand_features).max() / max(
        1.0, np.abs(hand_features).max())

  print(f"{args.experts} x R50x1 (untrained), {args.images} images of {TASK} at "
        f"{args.resolution} px, batch {args.batch}, {os.cpu_count()} CPUs; selection engine "
        f"{args.engine} at {args.precision}")
  for i in range(args.rounds):
    print(f"round {i + 1}: selection {select_rates[i]:.2f}, in-process {inprocess_rates[i][0]:.2f} "
          f"before and {inprocess_rates[i][1]:.2f} after, by hand {hand_rates[i]:.2f} images x "
          f"experts/s; selection / in-process {select_rates[i] / adjacent[i]:.3f}, / by hand "
          f"{select_rates[i] / hand_rates[i]:.3f}")
  print(f"the round with the fastest selection (round {best_round + 1}):")
  print(f"selection (bin/select_expert path, cache off): {select_seconds:7.1f} s  "
        f"{select_rate:7.2f} images x experts/s  (features {seconds['features']:.1f} s, "
        f"knn {seconds['knn']:.2f} s; of the features: "
        + ", ".join(f"{name} {value:.1f} s" for name, value in parts.items()) + ")")
  print(f"in-process R50x1 forward:                                {inprocess_rate:7.2f} images/s"
        "  (mean of the rates right before and after that selection run)")
  print(f"by hand (hub.KerasLayer + model.predict):     {hand_seconds:7.1f} s  "
        f"{hand_rate:7.2f} images x experts/s")
  print(f"ratio selection / in-process:  {select_rate / inprocess_rate:6.3f}")
  print(f"ratio selection / by hand:     {select_rate / hand_rate:6.3f}")
  print(f"knn scores: {best['scores']['knn']}")
  print(f"features, selection path vs by hand (first expert): max difference {feature_diff:.2e} "
        "of their scale")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
