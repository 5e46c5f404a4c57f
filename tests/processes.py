"""The one way tests start the binaries and Python snippets in a child process.

Children run this checkout's code (`PYTHONPATH` is the repository, whatever is installed) with
TensorFlow's C++ logging at warnings (`TF_CPP_MIN_LOG_LEVEL=2`) unless a test asks otherwise.
Most are forked from a zygote that has TensorFlow imported already (see `launch` and the rule
above `RUN_TIME_VARIABLES`); what `run` and `start` return is the same either way.
"""
import os
import resource
import signal
import subprocess
import sys

from tests import zygote_client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Long enough for the slowest end-to-end run on a loaded 2-core machine.
TIMEOUT_SECONDS = 900


def env(**overrides):
  """This process's environment for a child: `PYTHONPATH` = the repository, TF logging at 2.

  `overrides`: variables to set; a value of None removes the variable. Returns a new dict.
  """
  result = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
  for name, value in overrides.items():
    if value is None:
      result.pop(name, None)
    else:
      result[name] = value
  return result


def binary_command(binary, args, python_options=()):
  """The argv that runs `bin/<binary>` with `args` (a list of str) under this Python."""
  return python_command([os.path.join(REPO, "bin", binary), *args], python_options)


def check(proc):
  """Asserts `proc` (a CompletedProcess with text output) exited 0, showing its output's tails."""
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc


def python_command(args, python_options=()):
  """The argv that runs this Python with `python_options` (e.g. `("-X", "importtime")`) and `args`
  (a script or `-c CODE`, then its arguments)."""
  return [sys.executable, *python_options, *args]


def run(command, check_exit=True, timeout=TIMEOUT_SECONDS, file_size_limit=None, fresh=False,
        **env_overrides):
  """Runs argv `command` to completion; returns the CompletedProcess (text output).

  `check_exit`: assert exit code 0. `file_size_limit`: bytes a file the child writes may grow to
  (a write beyond fails with EFBIG), or None. `fresh`: always a new process (see `launch`).
  `env_overrides` as in `env`.
  """
  with launch(command, env(**env_overrides), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
              file_size_limit=file_size_limit, fresh=fresh) as proc:
    try:
      stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      raise
  proc = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
  return check(proc) if check_exit else proc


def start(command, stdin=False, fresh=False, **env_overrides):
  """Starts argv `command` with its stdout and stderr piped (text); returns the Popen-like
  process (caller waits). `stdin`: pipe stdin too (else the child reads nothing). `fresh`: always
  a new process (see `launch`). `env_overrides` as in `env`."""
  return launch(command, env(**env_overrides),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                fresh=fresh)


def run_binary(binary, args, check_exit=True, timeout=TIMEOUT_SECONDS, python_options=(),
               **env_overrides):
  """Runs `bin/<binary>` with `args` to completion; returns the CompletedProcess (text output).

  `check_exit`: assert exit code 0. `env_overrides` as in `env`.
  """
  return run(binary_command(binary, args, python_options), check_exit, timeout, **env_overrides)


def start_binary(binary, args, **env_overrides):
  """Starts `bin/<binary>` with `args`, output discarded; returns the Popen-like process (caller
  waits)."""
  return launch(binary_command(binary, args), env(**env_overrides), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_python(code, args=(), check_exit=True, timeout=300, **env_overrides):
  """Runs `python -c code *args`; returns the CompletedProcess (text output).

  `check_exit`: assert exit code 0. `env_overrides` as in `env`.
  """
  return run(python_command(["-c", code, *args]), check_exit, timeout, **env_overrides)


# --- forked or fresh -------------------------------------------------------------------------
# A child is forked from this pytest process's zygote (tests/zygote.py: TensorFlow, keras, tfds,
# TF-Hub, numpy, sklearn and the tfexperts library already imported, ~5 s saved per child) when
# that cannot be told from a new `python` process:
# * the command is this interpreter running a script or `-c CODE`, with no interpreter option
#   (`-X importtime`, `-I`, ... are start-up behaviour: a new process), and
# * the child's environment differs from the zygote's only in variables read after start-up, at
#   run time (`RUN_TIME_VARIABLES`). Anything else that differs (TF_CPP_MIN_LOG_LEVEL other than
#   2, TF_ENABLE_ONEDNN_OPTS, TF_NUM_*THREADS, OMP_*, CUDA_VISIBLE_DEVICES, PYTHON*, PATH, HOME,
#   LANG, TFDS_DATA_DIR, ...) may have been read while TensorFlow, tfds or Python started: a new
#   process.
# Everything else (an installed console script, `fresh=True` for a test about real start-up, no
# zygote, or TESTS_ZYGOTE=0 in pytest's environment) starts a new process with subprocess.Popen.
ZYGOTE_SWITCH = "TESTS_ZYGOTE"
RUN_TIME_VARIABLES = frozenset({
    "PYTEST_CURRENT_TEST",  # set by pytest per test
    "TF_CONFIG",  # read when a cluster resolver is made
    "TFHUB_CACHE_DIR",  # read by tensorflow_hub's resolver on each load
    "TFEXPERTS_VERBOSE", "TFEXPERTS_LOGICAL_CPUS",  # read by tfexperts when it runs
})


def forkable(command, child_env, zygote_env):
  """True when argv `command` with environment `child_env` (a dict) may run forked from a
  zygote whose environment is `zygote_env` (the rule above)."""
  if len(command) < 2 or command[0] != sys.executable:
    return False
  if command[1] == "-c":
    runs_a_program = len(command) >= 3
  else:
    runs_a_program = not command[1].startswith("-") and os.path.isfile(command[1])
  changed = {name for name in child_env.keys() | zygote_env.keys()
             if child_env.get(name) != zygote_env.get(name)}
  return runs_a_program and changed <= RUN_TIME_VARIABLES


def launch(command, child_env, stdin, stdout, stderr=subprocess.PIPE, file_size_limit=None,
           fresh=False):
  """Starts argv `command` with environment `child_env`, forked from the zygote when `forkable`
  and not `fresh`, else as a new process; returns a Popen or a Popen-like ZygoteProcess.

  `stdin`, `stdout`, `stderr`: subprocess.PIPE (text) or subprocess.DEVNULL.
  `file_size_limit` as in `run`.
  """
  if not fresh and command[:1] == [sys.executable] and os.environ.get(ZYGOTE_SWITCH) != "0":
    zygote_env = zygote_client.server_env()
    if zygote_env is not None and forkable(command, child_env, zygote_env):
      forked = zygote_client.launch(command[1:], child_env, stdin, stdout, stderr,
                                    file_size_limit)
      if forked is not None:
        return forked
  return subprocess.Popen(command, env=child_env, text=True, stdin=stdin, stdout=stdout,
                          stderr=stderr, preexec_fn=_file_size_limited(file_size_limit))


def _file_size_limited(limit):
  if limit is None:
    return None

  def preexec():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: the write fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
  return preexec
