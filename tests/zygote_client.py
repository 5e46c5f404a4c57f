"""Starts test children by forking them from the zygote (tests/zygote.py); each looks like a Popen.

`launch` asks this pytest process's zygote (started on first use, stopped when this process
exits: the zygote serves until the pipe to its stdin closes) for a child and returns a
`ZygoteProcess`, or None when no zygote could start (a warning says why; callers then start a
real process). Which commands may be forked is decided by the caller (tests/processes.py).
"""
import io
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings

from tests import zygote

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Preloading takes ~7 s on a quiet machine; a loaded one can take several times as long.
START_SECONDS = 300


class _Zygote:
  """The running server: its Popen, socket path and environment."""

  def __init__(self, server_env):
    self.directory = tempfile.mkdtemp(prefix="tests-zygote-")
    self.socket_path = os.path.join(self.directory, "socket")
    self.env = server_env
    self.log_path = os.path.join(self.directory, "server.log")
    with open(self.log_path, "w") as log:
      self.proc = subprocess.Popen(
          [sys.executable, "-c", "from tests import zygote; zygote.main()", self.socket_path],
          env=server_env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    ready = _read_line_within(self.proc.stdout, START_SECONDS)
    if ready != b"ready\n":
      self.stop()
      with open(self.log_path, errors="replace") as log:
        raise RuntimeError(f"the zygote did not start ({ready!r}): {log.read()[-3000:]}")

  def stop(self):
    """Closes the zygote's stdin (it exits, removing its directory) and waits for it."""
    self.proc.stdin.close()
    try:
      self.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    self.proc.stdout.close()
    shutil.rmtree(self.directory, ignore_errors=True)


def _read_line_within(stream, seconds):
  selector = selectors.DefaultSelector()
  selector.register(stream, selectors.EVENT_READ)
  if not selector.select(seconds):
    return b""
  return stream.readline()


_lock = threading.Lock()
_state = {"pid": None, "zygote": None}  # the zygote of process `pid` (None: failed to start)


def server_env():
  """The environment of this process's zygote (a dict), or None when it could not start."""
  zygote_ = _running()
  return zygote_.env if zygote_ else None


def _running():
  import atexit  # pylint: disable=g-import-not-at-top
  from tests import processes  # pylint: disable=g-import-not-at-top
  with _lock:
    if _state["pid"] != os.getpid():  # first use in this process (or in a fork of it)
      _state["pid"] = os.getpid()
      try:
        _state["zygote"] = _Zygote(processes.env())
        atexit.register(_state["zygote"].stop)
      except (OSError, RuntimeError) as e:
        _state["zygote"] = None
        warnings.warn(f"children start as new processes, without the zygote: {e}")
    return _state["zygote"]


def launch(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
           stderr=subprocess.PIPE, file_size_limit=None):
  """Forks a child that runs `argv` (a script or `-c CODE` and their arguments, as after
  `python`) with environment `env` (a dict) in the current directory.

  `stdin`, `stdout`, `stderr`: subprocess.PIPE (a text pipe) or subprocess.DEVNULL.
  `file_size_limit`: bytes a file of the child may grow to (RLIMIT_FSIZE), or None.
  Returns a running ZygoteProcess, or None when there is no zygote (or it stopped answering).
  """
  zygote_ = _running()
  if zygote_ is None:
    return None
  child_ends, parent_ends = [], []
  for index, how in enumerate((stdin, stdout, stderr)):
    if how == subprocess.DEVNULL:
      child_ends.append(os.open(os.devnull, os.O_RDWR))
      parent_ends.append(None)
    elif how == subprocess.PIPE:
      read_end, write_end = os.pipe()
      child_ends.append(read_end if index == 0 else write_end)
      parent_ends.append(write_end if index == 0 else read_end)
    else:
      raise ValueError(f"stdin/stdout/stderr must be PIPE or DEVNULL. Received: {how!r}")
  connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    connection.connect(zygote_.socket_path)
    zygote.send_request(connection, {"argv": list(argv), "env": env, "cwd": os.getcwd(),
                                     "file_size_limit": file_size_limit}, child_ends)
  except OSError as e:  # the zygote is gone: no child was started
    connection.close()
    for fd in parent_ends:
      if fd is not None:
        os.close(fd)
    with _lock:
      _state["zygote"] = None
    warnings.warn(f"the zygote stopped answering ({e}); children start as new processes")
    return None
  finally:
    for fd in child_ends:
      os.close(fd)
  return ZygoteProcess([sys.executable, *argv], connection, parent_ends)


class ZygoteProcess:
  """A child forked by the zygote, used like a subprocess.Popen started with text=True.

  `pid` is the process running the program (signals sent to it reach the program); its exit
  status comes from the zygote, which reaps it. Has args, pid, returncode, stdin, stdout, stderr,
  poll, wait, communicate, send_signal, terminate, kill, and works as a context manager.
  """

  def __init__(self, args, connection, parent_ends):
    self.args = args
    self.returncode = None
    self._connection = connection
    self._received = b""
    stdin, stdout, stderr = parent_ends
    # As subprocess.Popen(text=True) wraps its pipes: the locale's encoding, universal newlines.
    self.stdin = (None if stdin is None
                  else io.TextIOWrapper(io.open(stdin, "wb"), write_through=True))
    self.stdout = None if stdout is None else io.TextIOWrapper(io.open(stdout, "rb"))
    self.stderr = None if stderr is None else io.TextIOWrapper(io.open(stderr, "rb"))
    self._output = {}  # fd -> bytes read so far by communicate
    kind, value = self._read_line(None)
    if kind != "pid":
      self._close_pipes()
      raise RuntimeError(f"the zygote refused {args}: {value}")
    self.pid = int(value)

  def _read_line(self, timeout):
    self._connection.settimeout(timeout)
    while b"\n" not in self._received:
      chunk = self._connection.recv(256)
      if not chunk:
        raise RuntimeError(f"the zygote closed the connection of {self.args[:2]} "
                           f"(received {self._received!r})")
      self._received += chunk
    line, self._received = self._received.split(b"\n", 1)
    kind, _, value = line.decode().partition(" ")
    return kind, value

  def _read_exit(self, timeout):
    try:
      kind, value = self._read_line(timeout)
    except (socket.timeout, BlockingIOError):
      return
    if kind != "exit":
      raise RuntimeError(f"unexpected message from the zygote: {kind} {value}")
    self.returncode = int(value)
    self._connection.close()

  def poll(self):
    """The exit status if the child has exited (and was reaped), else None."""
    if self.returncode is None:
      self._read_exit(0)
    return self.returncode

  def wait(self, timeout=None):
    """Waits for the child; returns its exit status. Raises subprocess.TimeoutExpired."""
    if self.returncode is None:
      self._read_exit(timeout)
      if self.returncode is None:
        raise subprocess.TimeoutExpired(self.args, timeout)
    return self.returncode

  def send_signal(self, sig):
    """Sends `sig` to the child unless it is known to have exited."""
    if self.poll() is None:
      os.kill(self.pid, sig)

  def terminate(self):
    """SIGTERM to the child."""
    self.send_signal(15)

  def kill(self):
    """SIGKILL to the child."""
    self.send_signal(9)

  def communicate(self, input=None, timeout=None):  # pylint: disable=redefined-builtin
    """Writes `input` (str or None) to stdin and closes it, reads stdout and stderr to their
    ends and waits; returns (stdout, stderr) as str (None where not piped).

    Raises subprocess.TimeoutExpired after `timeout` seconds; calling again continues.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    self._exchange(input or "", deadline, timeout)
    self.wait(None if deadline is None else max(0, deadline - time.monotonic()))
    results = []
    for stream in (self.stdout, self.stderr):
      if stream is None:
        results.append(None)
        continue
      data = self._output.get(stream.fileno(), b"").decode(stream.encoding, stream.errors)
      results.append(data.replace("\r\n", "\n").replace("\r", "\n"))
      stream.close()
    return tuple(results)

  def _exchange(self, text, deadline, timeout):
    selector = selectors.DefaultSelector()
    pending = b""
    if self.stdin is not None and not self.stdin.closed:
      pending = text.encode(self.stdin.encoding)
      self.stdin.flush()
      if pending:
        selector.register(self.stdin.fileno(), selectors.EVENT_WRITE)
      else:
        self.stdin.close()
    for stream in (self.stdout, self.stderr):
      if stream is not None and not stream.closed:
        self._output.setdefault(stream.fileno(), b"")
        selector.register(stream.fileno(), selectors.EVENT_READ)
    while selector.get_map():
      remaining = None if deadline is None else deadline - time.monotonic()
      if remaining is not None and remaining <= 0:
        raise subprocess.TimeoutExpired(self.args, timeout)
      for key, _ in selector.select(remaining):
        if key.events & selectors.EVENT_WRITE:
          try:
            pending = pending[os.write(key.fd, pending[:65536]):]
          except BrokenPipeError:
            pending = b""
          if not pending:
            selector.unregister(key.fd)
            self.stdin.close()
          continue
        chunk = os.read(key.fd, 65536)
        if chunk:
          self._output[key.fd] += chunk
        else:
          selector.unregister(key.fd)

  def _close_pipes(self):
    for stream in (self.stdin, self.stdout, self.stderr):
      if stream is not None and not stream.closed:
        stream.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._close_pipes()
    self.wait()
