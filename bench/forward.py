"""Feature-extraction throughput of BiT R50x1 against Keras' ResNet50V2 and the machine's matmul.

In one run, on the same random images (batch 32, 224 px by default), it measures images/s of
  ours       tfexperts BiT R50x1 pre-logits, as a tf.function without XLA and with XLA
             (`jit_compile=True`)
  ours inference  the same weights with every kernel weight-standardized once
             (`layers.freeze_standardization`, as the feature path's in-process models), both ways
  ResNet50V2 `keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg")`,
             the same two ways
  module     our R50x1 exported as a hub module (tfexperts.hub.export), run through the
             project's feature path (tfexperts.select.features.embed with its defaults, as
             bin/select_expert does: no XLA) on the model `tfexperts.hub.native` rebuilds from it,
             and, for comparison, loaded with `hub.load` (tfexperts.hub.load, the path of other
             modules); each steady rate is taken from two embed runs of different lengths (the
             difference cancels per-run costs such as tracing, printed separately)
  engines   the same module through `tfexperts.hub.openvino_engine` (the `--engine=openvino`
             path: converted once, compiled with INFERENCE_PRECISION_HINT) at each --precisions
             (float16 only where the CPU has AVX512-FP16/AMX-FP16), via features.embed, and
             ResNet50V2 through the same engine at the same precisions (the limit row); each with
             its ratio to "module via features.embed" (today's TensorFlow float32 feature path)
and the float32 matmul GFLOP/s of this machine, then the ratios:
  ours (and ours inference) / ResNet50V2   without XLA and with XLA
  ours GFLOP/s / matmul       (graph FLOPs per image x images/s, with XLA)
  module via features / ours  (both without XLA, the feature path's default)

Usage: python bench/forward.py [--batch 32] [--size 224] [--seconds 10] [--rows all|engines]
                               [--precisions float32,bfloat16]
  --rows engines measures only today's feature path and the engine rows (no XLA, no hub.load).
Run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (`env -u OPENBLAS_CORETYPE -u
OPENBLAS_L2_SIZE python bench/forward.py`); the BLAS kernel NumPy runs is printed.
"""
import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

import keras
from _common import blas_kernel
from tfexperts.hub import export as hub_export
from tfexperts.hub import load as hub_load
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import native
from tfexperts.hub import openvino_engine
from tfexperts.models import bit
from tfexperts.models import layers as bit_layers
from tfexperts.select import features as features_lib


def graph_flops(fn, spec):
  """Float operations of one call of `fn` on `spec`, counted by TF's profiler on its graph."""
  graph = fn.get_concrete_function(spec).graph
  opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  opts["output"] = "none"
  return tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops


def throughput(fn, images, seconds):
  """Calls `fn(images)` for about `seconds` after 2 warm-up calls (the first one compiles).

  Returns `(images per second, seconds of the first call)`.
  """
  start = time.perf_counter()
  fn(images).numpy()
  first = time.perf_counter() - start
  fn(images).numpy()
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds or calls < 3:
    fn(images).numpy()
    calls += 1
  return calls * images.shape[0] / (time.perf_counter() - start), first


def matmul_gflops(n=2048, seconds=5.0):
  """Float32 GFLOP/s of an n x n matmul on this machine."""
  a = tf.random.normal((n, n))
  b = tf.random.normal((n, n))
  mm = tf.function(lambda: tf.matmul(a, b))
  mm().numpy()
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    mm().numpy()
    calls += 1
  return 2.0 * n ** 3 * calls / (time.perf_counter() - start) / 1e9


def feature_path_throughput(model, images, batches):
  """Steady images/s of `model` through `features.embed`, and its fixed cost per run (seconds).

  Two runs over `batches[0]` and `batches[1]` copies of `images`; the rate is the difference in
  images over the difference in time, so compilation and other per-run costs cancel.
  """
  labels = np.zeros(images.shape[0], np.int64)
  times = []
  for count in batches:
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat(count)
    start = time.perf_counter()
    features_lib.embed(model, dataset, log_every_seconds=None)
    times.append(time.perf_counter() - start)
  rate = (batches[1] - batches[0]) * images.shape[0] / max(times[1] - times[0], 1e-9)
  return rate, times[0] - batches[0] * images.shape[0] / rate


def embed_throughput(model, images, count):
  """Images/s of `model` through `features.embed` over `count` copies of `images`, after a warm-up
  run of one batch (per-run costs are included: small for a compiled engine model)."""
  labels = np.zeros(images.shape[0], np.int64)
  features_lib.embed(model, tf.data.Dataset.from_tensors((images, labels)), log_every_seconds=None)
  dataset = tf.data.Dataset.from_tensors((images, labels)).repeat(count)
  start = time.perf_counter()
  features_lib.embed(model, dataset, log_every_seconds=None)
  return count * images.shape[0] / (time.perf_counter() - start)


def cpu_has_float16():
  """True when this CPU computes float16 natively (AVX512-FP16 or AMX-FP16 flags)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      flags = f.read()
  except OSError:
    return False
  return "avx512_fp16" in flags or "amx_fp16" in flags


def engine_rates(path, ref_path, images, precisions, batches):
  """{(model, precision): (images/s via features.embed, load seconds)} through the OpenVINO
  engine for the exported R50x1 at `path` and ResNet50V2 at `ref_path` (input range [-1, 1])."""
  rates = {}
  for precision in precisions:
    for name, handle in (("R50x1", path), ("ResNet50V2", ref_path + "?range=-1,1")):
      start = time.perf_counter()
      embedder = openvino_engine.load(hub_load.reference(handle), None, precision,
                                      images.shape[1])
      load = time.perf_counter() - start
      if embedder is None:
        continue
      rates[name, precision] = (embed_throughput(embedder.function, images, batches[1]), load)
      print(f"  measured openvino {name} {precision}: {rates[name, precision][0]:.2f} images/s",
            flush=True)
  return rates


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="measuring time per model and mode (after warm-up)")
  parser.add_argument("--rows", choices=("all", "engines"), default="all")
  parser.add_argument("--precisions", default="float32,bfloat16",
                      help="engine precisions (float16 is skipped on CPUs without it)")
  args = parser.parse_args()
  precisions = [p for p in args.precisions.split(",") if p]
  for precision in precisions:
    openvino_engine.check_precision(precision)
  if "float16" in precisions and not cpu_has_float16():
    print("float16 rows skipped: this CPU has neither AVX512-FP16 nor AMX-FP16.")
    precisions.remove("float16")
  engines = openvino_engine.available()
  if not engines:
    print(f"engine rows skipped: OpenVINO is not installed ({openvino_engine.INSTALL_HINT}).")
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
  print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}", flush=True)

  images = tf.random.uniform((args.batch, args.size, args.size, 3))
  spec = tf.TensorSpec(images.shape, tf.float32)
  ours_model = bit.create_model("r50x1")
  ref_model = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg",
                                            input_shape=(args.size, args.size, 3))
  # The inference model of the feature path (tfexperts.hub.native): the same weights, kernels
  # weight-standardized once rather than at every call.
  inference_model = bit.create_model("r50x1")
  for target, source in zip(inference_model.variables, ours_model.variables):
    target.assign(source)
  bit_layers.freeze_standardization(inference_model)
  ours_call = lambda x: ours_model(x)["pre_logits"]
  inference_call = lambda x: inference_model(x)["pre_logits"]
  ref_call = lambda x: ref_model(x * 2.0 - 1.0)
  full = args.rows == "all"
  flops_per_image = graph_flops(tf.function(ours_call, input_signature=[spec]), spec) / args.batch
  gflops_machine = matmul_gflops() if full else float("nan")
  rates, firsts = {}, {}
  for name, call in (("ours", ours_call), ("ours inference", inference_call),
                     ("ResNet50V2", ref_call)):
    for xla in (False, True) if full else (False,):
      fn = tf.function(call, input_signature=[spec], jit_compile=xla)
      rates[name, xla], firsts[name, xla] = throughput(fn, images, args.seconds)
      print(f"  measured {name} xla={xla}: {rates[name, xla]:.2f} images/s", flush=True)

  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "r50x1", "1")
    hub_export.export_expert(ours_model, path, metadata_lib.build(
        "full", "bench_r50x1", ours_model, resolution=args.size))
    per_batch = args.batch / rates["ours", False]
    extra = max(2, int(np.ceil(args.seconds / per_batch)))
    start = time.perf_counter()
    native_embed = native.NativeRunner().load(hub_load.reference(path))
    native_load = time.perf_counter() - start
    assert native_embed is not None, "the exported module did not verify as a native model"
    module_rate, module_fixed = feature_path_throughput(native_embed, images, (2, 2 + extra))
    hub_rate = hub_fixed = hub_load_seconds = float("nan")
    if full:
      start = time.perf_counter()
      expert = hub_load.load_expert(path)
      hub_load_seconds = time.perf_counter() - start
      hub_rate, hub_fixed = feature_path_throughput(expert.embed, images, (2, 2 + extra))
    engine = {}
    if engines:
      ref_path = os.path.join(tmp, "resnet50v2")
      ref_model.export(ref_path, verbose=False)
      engine = engine_rates(path, ref_path, images.numpy(), precisions, (2, 2 + extra))

  achieved = rates.get(("ours", True), float("nan")) * flops_per_image / 1e9
  print(f"threads: intra={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"cpus={os.cpu_count()}; batch {args.batch}, {args.size} px")
  print(f"matmul (2048^2, float32):             {gflops_machine:8.1f} GFLOP/s")
  print(f"BiT R50x1 graph FLOPs per image:      {flops_per_image / 1e9:8.2f} GFLOP")
  for (name, xla), rate in rates.items():
    print(f"{name + (' XLA' if xla else ''):<16} {rate:8.2f} images/s  (first call "
          f"{firsts[name, xla]:.1f}s)")
  print(f"module via features.embed:       {module_rate:8.2f} images/s  (the feature path: "
        f"hub.native, load {native_load:.1f}s, per-run fixed cost {module_fixed:.1f}s)")
  print(f"module via hub.load + embed:     {hub_rate:8.2f} images/s  (the path of other modules:"
        f" load {hub_load_seconds:.1f}s, per-run fixed cost {hub_fixed:.1f}s)")
  for (name, precision), (rate, load) in engine.items():
    print(f"openvino {name} {precision:<8} {rate:8.2f} images/s  (via features.embed; load and "
          f"convert {load:.1f}s); ratio / module via features.embed (TF float32): "
          f"{rate / module_rate:.3f}, / ours inference (TF float32, same weights): "
          f"{rate / rates['ours inference', False]:.3f}")
  for xla in (False, True) if full else (False,):
    for name in ("ours", "ours inference"):
      print(f"ratio {name} / ResNet50V2, {'XLA:   ' if xla else 'no XLA:'}"
            f"{' ' * (15 - len(name))}{rates[name, xla] / rates['ResNet50V2', xla]:8.3f}")
  print(f"ratio ours GFLOP/s (XLA) / matmul:     {achieved / gflops_machine:8.3f}  "
        f"({achieved:.1f} GFLOP/s)")
  print(f"ratio module via features / ours:      {module_rate / rates['ours', False]:8.3f}  "
        f"(/ ours inference: {module_rate / rates['ours inference', False]:.3f})")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
