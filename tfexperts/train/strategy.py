"""Distribution strategies: `--tpu=NAME_OR_ADDRESS`, else `--strategy=auto|mirrored|multi_worker|one_device`."""
import json
import os
import socket
import threading

import grpc

from tfexperts import errors
from tfexperts import lazy

tf = lazy.LazyModule("tensorflow")  # STRATEGIES is read by the binaries' flag checks

from tfexperts.errors import UserError

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
TPU_TIMEOUT_SECONDS = 30.0


class TPUConnectionError(UserError, RuntimeError):
  """No TPU answers at the given name or address (within the timeout)."""
# Splits the host CPU into this many logical devices before a strategy is made, so `mirrored`
# can be tried (and tested) with several replicas on a machine without accelerators.
LOGICAL_CPUS_ENV = "TFEXPERTS_LOGICAL_CPUS"


def _split_cpu_from_env():
  value = os.environ.get(LOGICAL_CPUS_ENV)
  if not value:
    return
  if not value.isdigit() or int(value) < 1:
    raise UserError(f"{LOGICAL_CPUS_ENV} must be a positive integer. Received: {value!r}")
  cpu = tf.config.list_physical_devices("CPU")[0]
  wanted = [tf.config.LogicalDeviceConfiguration()] * int(value)
  if len(tf.config.get_logical_device_configuration(cpu) or [None]) == int(value):
    return
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError as e:
    raise RuntimeError(f"{LOGICAL_CPUS_ENV}={value} must take effect before TensorFlow "
                       f"initializes its devices: {e}") from None


def _no_tpu_error(tpu, reason):
  return TPUConnectionError(
      f"No TPU was found at --tpu={tpu!r} ({reason}). Give the TPU's name or grpc://address, run "
      "on a TPU VM with --tpu=local, or drop --tpu to use --strategy=auto.")


def _check_grpc_address_answers(tpu, timeout_seconds):
  # TF waits indefinitely for a grpc:// address that does not answer as a gRPC server: a TCP probe
  # fails at once when nothing listens, and a channel readiness check bounds the rest (a process
  # that accepts connections but does not speak gRPC).
  address = tpu[len("grpc://"):]
  host, _, port = address.rpartition(":")
  try:
    with socket.create_connection((host, int(port)), timeout=timeout_seconds):
      pass
  except (OSError, ValueError) as e:
    raise _no_tpu_error(tpu, f"cannot connect: {e}") from None
  channel = grpc.insecure_channel(address)
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout_seconds)
  except grpc.FutureTimeoutError:
    raise _no_tpu_error(tpu, f"{address} accepts connections but gave no gRPC answer within "
                        f"{timeout_seconds:g} s (--tpu_timeout)") from None
  finally:
    channel.close()


def _connect_bounded(tpu, timeout_seconds):
  """TPUClusterResolver + connect_to_cluster in a thread, given up after `timeout_seconds`."""
  outcome = {}

  def connect():
    try:
      outcome["resolver"] = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
      tf.config.experimental_connect_to_cluster(outcome["resolver"])
    except Exception as e:  # pylint: disable=broad-except
      outcome["error"] = e

  thread = threading.Thread(target=connect, name="tpu-connect", daemon=True)
  thread.start()
  thread.join(timeout_seconds)
  if thread.is_alive():
    raise _no_tpu_error(tpu, f"no connection within {timeout_seconds:g} s (--tpu_timeout)")
  if "error" in outcome:
    raise outcome["error"]
  return outcome["resolver"]


def _tpu_strategy(tpu, timeout_seconds):
  if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or not (
      timeout_seconds > 0):
    raise UserError(f"--tpu_timeout must be a positive number of seconds. Received: "
                    f"{timeout_seconds!r}")
  if tpu.startswith("grpc://"):
    _check_grpc_address_answers(tpu, timeout_seconds)
  try:
    resolver = _connect_bounded(tpu, timeout_seconds)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except TPUConnectionError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # The resolver fails in many ways (NotFoundError, ValueError, URLError from the GCE metadata
    # server, RPC errors); each means the same thing to the user: no TPU answers there.
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise _no_tpu_error(tpu, first_line) from None
  return tf.distribute.TPUStrategy(resolver)


def make_strategy(tpu=None, strategy="auto", tpu_timeout=TPU_TIMEOUT_SECONDS):
  """Returns the `tf.distribute.Strategy` the flags ask for.

  Args:
    tpu: TPU name or address (`local` on a TPU VM); when set, TPUStrategy is used.
    tpu_timeout: seconds the connection to the TPU may take (not its initialisation); then a
      `TPUConnectionError` naming the address.
    strategy: one of STRATEGIES. `auto` = MirroredStrategy over the visible GPUs when there are
      any, else OneDeviceStrategy on the CPU. `mirrored` without GPUs mirrors over the logical
      CPUs (one unless the environment variable TFEXPERTS_LOGICAL_CPUS=N splits the CPU).
      `multi_worker` reads the cluster from TF_CONFIG.

  Raises:
    `TPUConnectionError` (a UserError) when no TPU answers at `tpu`; UserError when `multi_worker` is
    asked without TF_CONFIG, or for an unknown `strategy`.
  """
  if tpu:
    return _tpu_strategy(tpu, tpu_timeout)
  if strategy not in STRATEGIES:
    raise errors.UserError(f"Unknown strategy {strategy!r}. Choose one of {STRATEGIES}."
                           f"{errors.did_you_mean(strategy, STRATEGIES)}")
  _split_cpu_from_env()
  if strategy == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise errors.UserError("--strategy=multi_worker needs the cluster in the TF_CONFIG "
                             "environment variable (see tf.distribute.MultiWorkerMirroredStrategy).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if strategy == "mirrored" and not gpus:
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
  if strategy == "mirrored" or (strategy == "auto" and gpus):
    return tf.distribute.MirroredStrategy()
  return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


def is_chief(strategy):
  """True on the worker that writes checkpoints, summaries and results (task 0 / single host)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if task_type in (None, "chief"):
    return True
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_id(strategy):
  """This worker's task id in a multi-worker cluster; 0 elsewhere."""
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(resolver.task_id or 0) if resolver is not None and resolver.task_id is not None else 0
