"""Where BiT R50x1's forward time goes under XLA, beside ResNet50V2: timing by layer type.

XLA fuses a model into a few large kernels, so per-op profiles do not split the time by layer;
this bench removes one kind of work at a time and times what is left (same random images, batch
32, 224 px by default, every variant a `tf.function(jit_compile=True)`, ms per batch):
  ours inference  tfexperts R50x1, kernels weight-standardized once (the feature path's model)
  GN affine       the same with every GroupNorm's statistics removed: `x * gamma + beta` only
  GN identity     the same with every GroupNorm removed (ReLUs kept)
  ResNet50V2      keras.applications' (BatchNorm, inference mode)
  RN50V2 no BN    the same with every BatchNormalization removed
  convs FLOPs     graph FLOPs per image of each model (TF's profiler)
Then: GroupNorm statistics = ours - GN affine, the affine part = GN affine - GN identity, and
the rest (convolutions, padding, pooling, adds) = GN identity; BatchNorm = ResNet50V2 - no BN.

Usage: python bench/forward_profile.py [--batch 32] [--size 224] [--seconds 8]
"""
import argparse
import os

import tensorflow as tf

import keras
from tfexperts.models import bit
from tfexperts.models import layers as bit_layers

import forward  # noqa: E402  (bench/forward.py: throughput, graph_flops)


def _affine(self, x):
  return x * self.gamma + self.beta


def _identity(self, x):  # pylint: disable=unused-argument
  return x


def time_variant(call, images, seconds, patches=()):
  """ms per batch of `call` XLA-compiled, with `(cls, "call", fn)` patches applied while tracing
  (and restored after)."""
  saved = [(cls, name, getattr(cls, name)) for cls, name, _ in patches]
  for cls, name, fn in patches:
    setattr(cls, name, fn)
  try:
    spec = tf.TensorSpec(images.shape, tf.float32)
    fn = tf.function(call, input_signature=[spec], jit_compile=True)
    rate, _ = forward.throughput(fn, images, seconds)
    flops = forward.graph_flops(tf.function(call, input_signature=[spec]), spec)
  finally:
    for cls, name, fn in saved:
      setattr(cls, name, fn)
  return 1000.0 * images.shape[0] / rate, flops / images.shape[0] / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--seconds", type=float, default=8.0)
  args = parser.parse_args()
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
  images = tf.random.uniform((args.batch, args.size, args.size, 3))
  ours = bit.create_model("r50x1")
  bit_layers.freeze_standardization(ours)
  ref = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg",
                                      input_shape=(args.size, args.size, 3))
  ours_call = lambda x: ours(x)["pre_logits"]  # noqa: E731
  ref_call = lambda x: ref(x * 2.0 - 1.0)  # noqa: E731
  bn = keras.layers.BatchNormalization
  variants = {
      "ours inference": (ours_call, ()),
      "GN affine": (ours_call, [(bit_layers.GroupNorm, "call", _affine)]),
      "GN identity": (ours_call, [(bit_layers.GroupNorm, "call", _identity)]),
      "ResNet50V2": (ref_call, ()),
      "RN50V2 no BN": (ref_call, [(bn, "call", lambda self, x, training=None, mask=None: x)]),
  }
  ms, gflop = {}, {}
  for name, (call, patches) in variants.items():
    ms[name], gflop[name] = time_variant(call, images, args.seconds, patches)
    print(f"  {name:<15} {ms[name]:8.1f} ms/batch  {gflop[name]:6.2f} GFLOP/image", flush=True)
  print(f"batch {args.batch}, {args.size} px, XLA, {os.cpu_count()} CPUs")
  rows = [("ours: GroupNorm statistics", ms["ours inference"] - ms["GN affine"]),
          ("ours: GroupNorm scale/offset", ms["GN affine"] - ms["GN identity"]),
          ("ours: convolutions and the rest", ms["GN identity"]),
          ("ResNet50V2: BatchNorm", ms["ResNet50V2"] - ms["RN50V2 no BN"]),
          ("ResNet50V2: convolutions and the rest", ms["RN50V2 no BN"])]
  for label, value in rows:
    print(f"{label:<40} {value:8.1f} ms/batch")
  print(f"ratio ours / ResNet50V2 (images/s):      {ms['ResNet50V2'] / ms['ours inference']:8.3f}")
  print(f"ratio ours without GN statistics / RN50V2: {ms['ResNet50V2'] / ms['GN affine']:6.3f}")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
