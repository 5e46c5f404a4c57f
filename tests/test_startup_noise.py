"""TensorFlow's start-up noise and tfds' progress bars stay out of output that is not a terminal."""

from tests import processes
from tfexperts import startup_noise

# Lines TensorFlow 2.21 printed on import here (cuInit and cudart on a machine without a GPU).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796238336.215561   18709 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "E0000 00:00:1796238348.345170   18709 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796236240.011313    5474 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.",
    "I0000 00:00:1796292230.850866    7608 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
]
REAL = ["E0000 00:00:1796238348.345170   18709 some_kernel.cc:52] Check failed: real problem",
        "Traceback (most recent call last):", "bin/vtab_eval: error: --task: unknown 'x'.",
        "W0000 00:00:1 1 cuda_platform.cc:52] not at the start of the line: kept"[1:]]


def test_noise_lines_are_recognised_and_real_ones_kept():
  without_gpu = startup_noise.noise_pattern(has_nvidia_driver=False)
  assert all(startup_noise.is_noise(line + "\n", without_gpu) for line in NOISE)
  assert not any(startup_noise.is_noise(line, without_gpu) for line in REAL)
  # Where an NVIDIA driver is installed, CUDA's lines say why a GPU did not start: kept.
  with_gpu = startup_noise.noise_pattern(has_nvidia_driver=True)
  assert not startup_noise.is_noise(NOISE[2], with_gpu)
  assert startup_noise.is_noise(NOISE[0], with_gpu)


_SCRIPT = """
import sys
from tfexperts import startup_noise
if sys.argv[1] == "filtered":
  assert startup_noise.filter_stderr()
import tensorflow as tf
tf.constant(1.0) + 1
sys.stderr.write("E0000 00:00:1 1 some_kernel.cc:5] a real error\\n")
from tfexperts.data import offline
if sys.argv[1] == "filtered":  # the project's way
  offline.prepare_offline_datasets(sys.argv[2], "tfexperts_shapes_count/tiny")
else:  # tfds' own, which draws progress bars into a pipe
  import tempfile, tensorflow_datasets as tfds
  builder = tfds.builder("tfexperts_shapes_count/tiny", data_dir=sys.argv[2])
  with tempfile.TemporaryDirectory() as download_dir:
    builder.download_and_prepare(download_dir=download_dir, download_config=tfds.download.
                                 DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP))
"""


def _stderr(mode, data_dir):
  result = processes.run_python(_SCRIPT, [mode, data_dir], timeout=600, TF_CPP_MIN_LOG_LEVEL="0")
  return result.stderr


def test_a_program_that_is_not_on_a_terminal_prints_no_start_up_noise(tmp_path):
  pattern = startup_noise.noise_pattern()
  unfiltered = _stderr("plain", str(tmp_path / "a"))
  assert any(pattern.fullmatch(line) for line in unfiltered.splitlines()), unfiltered[-3000:]
  assert "\x1b[A" in unfiltered
  filtered = _stderr("filtered", str(tmp_path / "b"))
  assert "a real error" in filtered
  assert not [line for line in filtered.splitlines() if pattern.fullmatch(line)]
  assert "\x1b[A" not in filtered  # no progress bars drawn into a pipe
