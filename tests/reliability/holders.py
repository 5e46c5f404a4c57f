"""A separate process holding the lease on a directory, for tests of what another run sees."""
import os
import signal

from tests import processes

HOLDER = """
import sys
from tfexperts import lease
held = [lease.acquire(d, command=sys.argv[1]) for d in sys.argv[2:]]
print("held", flush=True)
sys.stdin.read()
"""


class Holder:
  """Runs a child process that takes the leases on `directories` and keeps them until `stop()`
  (or `kill()`, which is kill -9). `command` is what the child says it is running."""

  def __init__(self, directories, command="holder --workdir=x"):
    self.proc = processes.start(processes.python_command(["-c", HOLDER, command, *directories]),
                                stdin=True)
    line = self.proc.stdout.readline()
    assert line == "held\n", line + self.proc.stderr.read()
    self.pid = self.proc.pid

  def stop(self):
    """Lets the child exit normally (releasing its leases)."""
    self.proc.stdin.close()
    self.proc.wait()

  def kill(self):
    """kill -9 of the child: its leases are left behind as a dead holder's."""
    os.kill(self.pid, signal.SIGKILL)
    self.proc.wait()
    self.proc.stdin.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self.proc.poll() is None:
      self.kill()
