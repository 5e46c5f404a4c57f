"""Compute precision of embedding and fine-tuning: float32 (default), bfloat16 or float16.

A reduced precision means Keras' mixed policies: variables, logits, losses and GroupNorm
statistics stay float32, activations and matmuls/convolutions run in bfloat16 or float16, and
float16 training uses dynamic loss scaling. TPUs compute in bfloat16 (the choice there); GPUs in
float16 (compute capability >= 7.0) or bfloat16 (>= 8.0); CPUs with AVX512-BF16 / AMX-BF16 in
bfloat16. Elsewhere TensorFlow emulates the precision (it runs, but slower than float32):
`device_notice` says so in one line, and a device that cannot run it at all is a UserError.
"""
import contextlib

from tfexperts import errors

PRECISIONS = ("float32", "bfloat16", "float16")
DEFAULT = "float32"
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
_CPU_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}
_GPU_CAPABILITY = {"bfloat16": (8, 0), "float16": (7, 0)}


def check(precision):
  """Returns `precision` when it is one of PRECISIONS, else raises UserError naming the choices."""
  if precision not in PRECISIONS:
    raise errors.UserError(f"precision: {precision!r} is not one of {list(PRECISIONS)}."
                           f"{errors.did_you_mean(str(precision), PRECISIONS)}")
  return precision


def policy_name(precision):
  """The Keras dtype policy name of `precision` ("float32", "mixed_bfloat16", "mixed_float16")."""
  return _POLICIES[check(precision)]


@contextlib.contextmanager
def policy_scope(precision):
  """Context in which new Keras layers take `precision`'s mixed policy (the global policy is
  restored on exit); yields the policy name."""
  import keras  # pylint: disable=g-import-not-at-top  (keeps this module light to import)
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy_name(precision))
  try:
    yield policy_name(precision)
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _cpu_flags():
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return None


def device_notice(precision, device=None):
  """One line about how this machine runs `precision`, or None when it runs it natively.

  Takes a precision and optionally the device kind ("TPU", "GPU" or "CPU"; default: the first
  of those TensorFlow sees). Raises UserError for a precision the device cannot run at all
  (float16 on a TPU, bfloat16 on a GPU older than compute capability 8.0).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  check(precision)
  if precision == "float32":
    return None
  if device is None:
    device = next((kind for kind in ("TPU", "GPU")
                   if tf.config.list_logical_devices(kind)), "CPU")
  if device == "TPU":
    if precision == "float16":
      raise errors.UserError("precision: float16 does not run on TPUs; use --precision=bfloat16 "
                             "(the TPU's own precision) or float32.")
    return None
  if device == "GPU":
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    capability = details.get("compute_capability")
    if capability and tuple(capability) < _GPU_CAPABILITY[precision]:
      need = ".".join(map(str, _GPU_CAPABILITY[precision]))
      if precision == "bfloat16":
        raise errors.UserError(f"precision: bfloat16 needs a GPU of compute capability {need} or "
                               f"newer; this one has {capability[0]}.{capability[1]}. Use "
                               "--precision=float16 or float32.")
      return (f"precision float16: this GPU (compute capability {capability[0]}."
              f"{capability[1]}) has no float16 tensor cores; running float16 without them.")
    return None
  flags = _cpu_flags()
  if flags is not None and not flags & set(_CPU_FLAGS[precision]):
    return (f"precision {precision}: this CPU has no {' or '.join(_CPU_FLAGS[precision])}; "
            f"TensorFlow emulates {precision} (it runs, usually slower than float32).")
  return None
