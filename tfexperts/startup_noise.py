"""Keeps TensorFlow's start-up noise out of output that is not a terminal.

Importing TensorFlow prints lines a user cannot act on (absl's "All log messages before
absl::InitializeLog()", cudart / cuInit probing on a machine without an NVIDIA driver, CPU
instruction banners), some of them below any `TF_CPP_MIN_LOG_LEVEL`; tfds draws progress bars with
terminal control sequences (`\\x1b[A`). When the output is a log file or a pipe, `filter_stderr`
drops those lines and `quiet_tfds` turns the bars off. CUDA lines are kept on machines with an
NVIDIA driver, where they diagnose a GPU that does not start.
"""
import atexit
import os
import re
import subprocess
import sys

_NVIDIA_DRIVER = "/proc/driver/nvidia"
_ALWAYS = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"[IW]\d{4} [\d:. ]+ *\d+ cpu_feature_guard\.cc:\d+\] .*",
    r"To enable the following instructions: .*, in other operations, rebuild TensorFlow .*",
    r"(?:[IW]\d{4} [\d:. ]+ *\d+ port\.cc:\d+\] )?oneDNN custom operations are on\. .*",
)
_WITHOUT_GPU = (
    r"[IWE]\d{4} [\d:. ]+ *\d+ (cudart_stub|cuda_platform|cuda_executor|cuda_diagnostics|"
    r"cuda_dnn|cuda_fft|cuda_blas)\.cc:\d+\] .*",
)


def noise_pattern(has_nvidia_driver=None):
  """The compiled regex a whole noise line matches (without its newline).

  `has_nvidia_driver`: whether CUDA lines carry information here (None: look for the driver).
  """
  if has_nvidia_driver is None:
    has_nvidia_driver = os.path.exists(_NVIDIA_DRIVER)
  lines = _ALWAYS + (() if has_nvidia_driver else _WITHOUT_GPU)
  return re.compile("|".join(f"(?:{line})" for line in lines))


def is_noise(line, pattern=None):
  """True when `line` (str, with or without its newline) is start-up noise to drop."""
  return bool((pattern or noise_pattern()).fullmatch(line.rstrip("\r\n")))


# Runs in a child process, so what it has not forwarded yet (e.g. a C++ fatal error printed just
# before an abort) still reaches the real stderr when this process dies.
_FILTER_PROGRAM = r"""
import re, sys
pattern = re.compile(sys.argv[1])
out = sys.stdout.buffer
for line in sys.stdin.buffer:
  if not pattern.fullmatch(line.rstrip(b"\r\n").decode("utf-8", "replace")):
    out.write(line)
    out.flush()
"""


def filter_stderr():
  """Routes this process's stderr (file descriptor 2) through a noise filter if not a terminal.

  Children inherit the filtered descriptor. Returns True when the filter was installed (stderr
  is not a terminal), False otherwise. At exit the real stderr is restored and the filter drains.
  """
  if os.isatty(2) or os.environ.get("TFEXPERTS_STDERR_FILTERED") == str(os.getpid()):
    return False
  sys.stderr.flush()
  real = os.dup(2)
  child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER_PROGRAM,
                            noise_pattern().pattern], stdin=subprocess.PIPE, stdout=real,
                           stderr=subprocess.DEVNULL, close_fds=True)
  os.dup2(child.stdin.fileno(), 2)
  child.stdin.close()
  os.environ["TFEXPERTS_STDERR_FILTERED"] = str(os.getpid())

  def restore():
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(real, 2)  # closes this process's end of the pipe: the filter reads to its end
    try:
      child.wait(timeout=5)  # children still holding the pipe keep it open: don't hang on them
    except subprocess.TimeoutExpired:
      pass

  atexit.register(restore)
  return True


def quiet_tfds():
  """Turns tfds' progress bars off when stderr is not a terminal (no `\\x1b[A` in logs)."""
  if not os.isatty(2):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()
