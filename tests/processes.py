"""The one way tests start the binaries and Python snippets in a child process.

Children run this checkout's code (`PYTHONPATH` is the repository, whatever is installed) with
TensorFlow's C++ logging at warnings (`TF_CPP_MIN_LOG_LEVEL=2`) unless a test asks otherwise.
"""
import os
import subprocess
import sys

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


def run(command, check_exit=True, timeout=TIMEOUT_SECONDS, preexec_fn=None, **env_overrides):
  """Runs argv `command` to completion; returns the CompletedProcess (text output).

  `check_exit`: assert exit code 0. `preexec_fn`: called in the child before exec (e.g. to set a
  resource limit). `env_overrides` as in `env`.
  """
  proc = subprocess.run(command, env=env(**env_overrides), capture_output=True, text=True,
                        timeout=timeout, preexec_fn=preexec_fn)
  return check(proc) if check_exit else proc


def start(command, stdin=False, **env_overrides):
  """Starts argv `command` with its stdout and stderr piped (text); returns the Popen (caller
  waits). `stdin`: pipe stdin too (else the child reads nothing). `env_overrides` as in `env`."""
  return subprocess.Popen(command, env=env(**env_overrides), text=True,
                          stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_binary(binary, args, check_exit=True, timeout=TIMEOUT_SECONDS, python_options=(),
               **env_overrides):
  """Runs `bin/<binary>` with `args` to completion; returns the CompletedProcess (text output).

  `check_exit`: assert exit code 0. `env_overrides` as in `env`.
  """
  return run(binary_command(binary, args, python_options), check_exit, timeout, **env_overrides)


def start_binary(binary, args, **env_overrides):
  """Starts `bin/<binary>` with `args`, output discarded; returns the Popen (caller waits)."""
  return subprocess.Popen(binary_command(binary, args), env=env(**env_overrides),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_python(code, args=(), check_exit=True, timeout=300, **env_overrides):
  """Runs `python -c code *args`; returns the CompletedProcess (text output).

  `check_exit`: assert exit code 0. `env_overrides` as in `env`.
  """
  return run(python_command(["-c", code, *args]), check_exit, timeout, **env_overrides)
