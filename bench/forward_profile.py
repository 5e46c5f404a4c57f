"""Where BiT R50x1's forward time goes under XLA, beside ResNet50V2: timing by layer type.

XLA fuses a model into a few large kernels, so per-op profiles do not split the time by layer;
this bench removes one kind of work at a time and times what is left (same random images, batch
32, 224 px by default, every variant a `tf.function(jit_compile=True)`, ms per batch):
  ours inference  tfexperts R50x1, kernels weight-standardized once (the feature path's model)
  GN one pass     the same with every GroupNorm's statistics cut to one per-channel mean over
                  the pixels: `x * gamma + beta - mean(x)`, one reading pass before the
                  normalising one (not a GroupNorm: the least any exact GroupNorm must read,
                  since it cannot write its first output before it has seen the whole group)
  GN affine       the same with every GroupNorm's statistics removed: `x * gamma + beta` only
  GN identity     the same with every GroupNorm removed (ReLUs kept)
  ResNet50V2      keras.applications' (BatchNorm, inference mode)
  RN50V2 no BN    the same with every BatchNormalization removed
  convs FLOPs     graph FLOPs per image of each model (TF's profiler)
Then: GroupNorm statistics = ours - GN affine (of which one reading pass = GN one pass - GN
affine), the affine part = GN affine - GN identity, and
the rest (convolutions, padding, pooling, adds) = GN identity; BatchNorm = ResNet50V2 - no BN.
Graph FLOPs show the architectures differ: BiT strides in a block's first unit, after its 1x1
conv `a` (full resolution), Keras' ResNet50V2 in the last unit of the block before.

Each variant is timed in `--rounds` interleaved rounds and its best round is kept.

Usage: python bench/forward_profile.py [--batch 32] [--size 224] [--seconds 8] [--rounds 2]
"""
import argparse
import os

import tensorflow as tf

import keras
from tfexperts.models import bit
from tfexperts.models import layers as bit_layers

import forward  # noqa: E402  (bench/forward.py: throughput, graph_flops)


def _relu_if(y, relu):
  return tf.nn.relu(y) if relu else y


# Patches of `GroupNorm.call(x, relu=False)`: each keeps the ReLU that follows the GroupNorm.
def _affine(self, x, relu=False):
  return _relu_if(x * self.gamma + self.beta, relu)


def _one_pass(self, x, relu=False):
  flat = tf.reshape(x, [tf.shape(x)[0], -1, x.shape[-1]])
  return _relu_if(x * self.gamma + (self.beta - tf.reduce_mean(flat, axis=1))[:, None, None, :],
                  relu)


def _identity(self, x, relu=False):  # pylint: disable=unused-argument
  return _relu_if(x, relu)


def compile_variant(call, images, patches=()):
  """`call` XLA-compiled for `images`' shape, traced (and compiled, by one call) with the
  `(cls, "call", fn)` patches applied, which are restored after; returns `(fn, GFLOP per image)`.
  """
  saved = [(cls, name, getattr(cls, name)) for cls, name, _ in patches]
  for cls, name, fn in patches:
    setattr(cls, name, fn)
  try:
    spec = tf.TensorSpec(images.shape, tf.float32)
    fn = tf.function(call, input_signature=[spec], jit_compile=True)
    fn(images).numpy()
    flops = forward.graph_flops(tf.function(call, input_signature=[spec]), spec)
  finally:
    for cls, name, fn_saved in saved:
      setattr(cls, name, fn_saved)
  return fn, flops / images.shape[0] / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--seconds", type=float, default=8.0, help="per variant and round")
  parser.add_argument("--rounds", type=int, default=2)
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
      "GN one pass": (ours_call, [(bit_layers.GroupNorm, "call", _one_pass)]),
      "GN affine": (ours_call, [(bit_layers.GroupNorm, "call", _affine)]),
      "GN identity": (ours_call, [(bit_layers.GroupNorm, "call", _identity)]),
      "ResNet50V2": (ref_call, ()),
      "RN50V2 no BN": (ref_call, [(bn, "call", lambda self, x, training=None, mask=None: x)]),
  }
  compiled, gflop = {}, {}
  for name, (call, patches) in variants.items():
    compiled[name], gflop[name] = compile_variant(call, images, patches)
  ms = {}
  for _ in range(args.rounds):  # interleaved rounds, best of each: load changes hit all alike
    for name, fn in compiled.items():
      rate, _ = forward.throughput(fn, images, args.seconds)
      ms[name] = min(ms.get(name, float("inf")), 1000.0 * images.shape[0] / rate)
  for name in compiled:
    print(f"  {name:<15} {ms[name]:8.1f} ms/batch  {gflop[name]:6.2f} GFLOP/image", flush=True)
  print(f"batch {args.batch}, {args.size} px, XLA, {os.cpu_count()} CPUs")
  rows = [("ours: GroupNorm statistics", ms["ours inference"] - ms["GN affine"]),
          ("  of which one reading pass", ms["GN one pass"] - ms["GN affine"]),
          ("ours: GroupNorm scale/offset", ms["GN affine"] - ms["GN identity"]),
          ("ours: convolutions and the rest", ms["GN identity"]),
          ("ResNet50V2: BatchNorm", ms["ResNet50V2"] - ms["RN50V2 no BN"]),
          ("ResNet50V2: convolutions and the rest", ms["RN50V2 no BN"])]
  for label, value in rows:
    print(f"{label:<40} {value:8.1f} ms/batch")
  print(f"ratio ours / ResNet50V2 (images/s):      {ms['ResNet50V2'] / ms['ours inference']:8.3f}")
  print(f"ratio ours without GN statistics / RN50V2: {ms['ResNet50V2'] / ms['GN affine']:6.3f}")
  print(f"ratio ours with one statistics pass / RN50V2: {ms['ResNet50V2'] / ms['GN one pass']:6.3f}"
        "  (an exact GroupNorm reads at least once more than the affine one)")
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
