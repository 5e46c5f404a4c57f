"""A child forked by the zygote behaves as the same command run as a new process."""
import os
import signal
import subprocess
import sys

import pytest

from tests import processes
from tests import zygote_client

SNIPPET = """
import atexit, os, sys
atexit.register(lambda: print("atexit ran"))
print("argv", sys.argv, "path0", repr(sys.path[0]), "cwd", os.getcwd())
print("env", os.environ.get("TFEXPERTS_VERBOSE"), "main", __name__)
sys.stderr.write("to stderr\\n")
print("fds", sorted(int(fd) for fd in os.listdir("/proc/self/fd"))[:3])
if sys.argv[1] == "raise":
  raise KeyError("boom")
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(autouse=True)
def zygote_running():
  if zygote_client.server_env() is None:
    pytest.skip("no zygote here (see the warning)")


@pytest.mark.parametrize("how", ["0", "3", "raise"])
def test_a_snippet_runs_as_in_a_new_process(how, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  results = [processes.run_python(SNIPPET, [how], check_exit=False, fresh=fresh,
                                  TFEXPERTS_VERBOSE="7") for fresh in (False, True)]
  forked, fresh = [(r.returncode, r.stdout, r.stderr) for r in results]
  assert forked == fresh
  assert forked[0] == {"0": 0, "3": 3, "raise": 1}[how]
  assert f"cwd {tmp_path}" in forked[1] and "env 7 main __main__" in forked[1]
  assert "atexit ran" in forked[1]


def test_a_script_runs_as_in_a_new_process(tmp_path):
  script = tmp_path / "script.py"
  script.write_text(SNIPPET)
  command = processes.python_command([str(script), "raise"])
  forked, fresh = [processes.run(command, check_exit=False, fresh=fresh) for fresh in (False, True)]
  assert (forked.returncode, forked.stdout, forked.stderr) == (
      fresh.returncode, fresh.stdout, fresh.stderr)
  assert f"path0 '{tmp_path}'" in forked.stdout and 'KeyError: \'boom\'' in forked.stderr


def test_the_pid_is_the_program_and_signals_reach_it():
  proc = processes.start(processes.python_command(
      ["-c", "import os, sys; print(os.getpid(), flush=True); print(sys.stdin.read())"]),
      stdin=True)
  assert isinstance(proc, zygote_client.ZygoteProcess)
  assert int(proc.stdout.readline()) == proc.pid
  assert proc.poll() is None
  with pytest.raises(subprocess.TimeoutExpired):
    proc.wait(timeout=0.2)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait() == -signal.SIGTERM
  with pytest.raises(ProcessLookupError):  # reaped at once: no zombie answers a later kill -0
    os.kill(proc.pid, 0)
  proc.communicate()


def test_stdin_reaches_the_child_and_communicate_returns_both_streams():
  proc = processes.start(processes.python_command(
      ["-c", "import sys; text = sys.stdin.read(); print(text.upper()); "
             "sys.stderr.write(str(len(text)))"]), stdin=True)
  out, err = proc.communicate("a\r\nb" * 50000, timeout=60)
  assert (out, err, proc.returncode) == ("A\nB" * 50000 + "\n", "200000", 0)


def test_a_file_size_limit_fails_writes_beyond_it(tmp_path):
  code = ("import errno, sys\nfile = open(sys.argv[1], 'wb', buffering=0)\n"
          "print(file.write(b'x' * 1000))\ntry:\n  file.write(b'x')\n"
          "except OSError as e:\n  print(errno.errorcode[e.errno])")
  for fresh in (False, True):
    result = processes.run(processes.python_command(["-c", code, str(tmp_path / "f")]),
                           file_size_limit=1000, fresh=fresh)
    assert result.stdout == "1000\nEFBIG\n"


def test_start_up_settings_and_other_programs_get_a_new_process():
  server = zygote_client.server_env()
  snippet = processes.python_command(["-c", "pass"])
  assert processes.forkable(snippet, processes.env(TF_CONFIG="{}"), server)
  assert not processes.forkable(snippet, processes.env(TF_CPP_MIN_LOG_LEVEL="0"), server)
  assert not processes.forkable(snippet, processes.env(OMP_NUM_THREADS="1"), server)
  assert not processes.forkable(processes.python_command(["-c", "pass"], ("-X", "importtime")),
                                processes.env(), server)
  assert not processes.forkable([os.path.join(processes.REPO, "bin", "vtab_eval")],
                                processes.env(), server)
  assert processes.forkable(processes.binary_command("vtab_eval", []), processes.env(), server)
  assert isinstance(processes.start([sys.executable, "-X", "importtime", "-c", "pass"]),
                    subprocess.Popen)
