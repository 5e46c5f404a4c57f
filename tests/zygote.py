"""A pre-forking launcher ("zygote") for test children: TensorFlow is imported once, then forked.

A child process that starts with `import tensorflow` pays ~5 s (twice that on a loaded machine)
before its first line runs. The zygote is a server, one per pytest process (tests/zygote_client.py
starts it on first use), that imports the heavy modules once (`PRELOADED`, then the tfexperts
library without its binaries) and forks a child per request. Each child takes the requester's
stdin/stdout/stderr, environment, working directory and file size limit, then runs the script or
`-c CODE` as `__main__` and exits as Python would (SystemExit code, 1 after an uncaught traceback,
atexit handlers run). The server sends back the child's pid, reaps it and sends its exit status.

Fork safety: after the imports, no thread may run at the moment of a fork (one forked into the
child could hold a lock for ever). numpy and scipy start an OpenBLAS thread pool when imported,
but OpenBLAS stops it before each fork (its pthread_atfork handler) and the server never calls
BLAS, so it is not restarted; `check_fork_safe` verifies that with a trial fork and that
TensorFlow's runtime is not initialized (no op ran, no device was listed). OpenVINO starts a
thread at import that stays across forks, so it is not preloaded; nor are tfexperts.cli modules,
which define absl flags each binary must define itself.

Protocol on a Unix stream socket, one connection per child: the client sends a 4-byte length with
its three file descriptors attached (SCM_RIGHTS), then that many bytes of JSON (`argv`, `env`,
`cwd`, `file_size_limit`); the server answers `pid N\\n`, later `exit CODE\\n` (a signal death as
-SIGNUM, as subprocess reports it) or `error MESSAGE\\n`.
"""
import atexit
import importlib
import json
import os
import pkgutil
import resource
import runpy
import selectors
import shutil
import socket
import struct
import sys
import threading
import traceback
import types

PRELOADED = ("numpy", "sklearn", "tensorflow", "keras", "tensorflow_datasets", "tensorflow_hub")
# Packages of tfexperts left to each child: absl flags (cli), a thread at import (OpenVINO).
NOT_PRELOADED = ("tfexperts.cli", "tfexperts.hub.openvino")
_HEADER = struct.Struct("!I")


# --- the protocol, used by both ends ---------------------------------------------------------

def send_request(sock, request, fds):
  """Sends `request` (a JSON-able dict) on socket `sock` with file descriptors `fds` (3 ints)."""
  payload = json.dumps(request).encode()
  socket.send_fds(sock, [_HEADER.pack(len(payload))], list(fds))
  sock.sendall(payload)


def receive_request(sock):
  """Reads one request from `sock`; returns (the dict, the list of received file descriptors)."""
  header, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 3)
  if len(header) != _HEADER.size or len(fds) != 3:
    for fd in fds:
      os.close(fd)
    raise ValueError(f"bad request header {header!r} with {len(fds)} file descriptors")
  (size,) = _HEADER.unpack(header)
  payload = b""
  while len(payload) < size:
    chunk = sock.recv(size - len(payload))
    if not chunk:
      raise ValueError(f"request cut at {len(payload)} of {size} bytes")
    payload += chunk
  return json.loads(payload), fds


# --- the server --------------------------------------------------------------------------------

def preload():
  """Imports `PRELOADED` and every tfexperts module outside `NOT_PRELOADED`."""
  for name in PRELOADED:
    importlib.import_module(name)
  import tfexperts  # pylint: disable=g-import-not-at-top
  for module in pkgutil.walk_packages(tfexperts.__path__, "tfexperts."):
    if not module.name.startswith(NOT_PRELOADED):
      importlib.import_module(module.name)


def _thread_count():
  return len(os.listdir("/proc/self/task"))


def check_fork_safe():
  """Raises RuntimeError unless a fork now copies a single thread and no TensorFlow runtime.

  Forks once (the child exits at once) so that libraries with fork handlers (OpenBLAS) have
  stopped their threads, then counts this process's threads.
  """
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  if context.context()._context_handle is not None:  # pylint: disable=protected-access
    raise RuntimeError("TensorFlow's runtime was initialized while preloading")
  pid = os.fork()
  if pid == 0:
    os._exit(0)
  os.waitpid(pid, 0)
  if threading.active_count() != 1 or _thread_count() != 1:
    names = [open(f"/proc/self/task/{task}/comm").read().strip()
             for task in os.listdir("/proc/self/task")]
    raise RuntimeError(f"{threading.active_count()} Python and {_thread_count()} OS threads "
                       f"({names}) run at fork time")


class Server:
  """Accepts requests on `listener` (a listening Unix socket) and forks a child for each, until
  file descriptor `parent_fd` (the read end of a pipe from the pytest process) reaches its end."""

  def __init__(self, listener, parent_fd):
    self.listener = listener
    self.parent_fd = parent_fd
    self.selector = selectors.DefaultSelector()
    self.selector.register(listener, selectors.EVENT_READ, "accept")
    self.selector.register(parent_fd, selectors.EVENT_READ, "parent")
    self.running = {}  # pidfd -> (pid, the requester's connection)
    self.sys_path = list(sys.path)

  def serve(self):
    """Serves until the parent is gone; running children are left to finish on their own."""
    while True:
      for key, _ in self.selector.select():
        if key.data == "parent":
          if not os.read(self.parent_fd, 4096):
            return
        elif key.data == "accept":
          self._accept()
        else:
          self._reap(key.fd)

  def _accept(self):
    connection, _ = self.listener.accept()
    try:
      connection.settimeout(30)
      request, fds = receive_request(connection)
    except (OSError, ValueError) as e:
      _send_line(connection, f"error {e}")
      connection.close()
      return
    pid = os.fork()
    if pid == 0:
      self._close_in_child(connection)
      _run_child(request, fds, self.sys_path)  # never returns
    for fd in fds:
      os.close(fd)
    pidfd = os.pidfd_open(pid)
    self.running[pidfd] = (pid, connection)
    self.selector.register(pidfd, selectors.EVENT_READ, "child")
    _send_line(connection, f"pid {pid}")

  def _reap(self, pidfd):
    pid, connection = self.running.pop(pidfd)
    self.selector.unregister(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    _send_line(connection, f"exit {os.waitstatus_to_exitcode(status)}")
    connection.close()

  def _close_in_child(self, connection):
    """Closes in a new child every descriptor of the server's (a fresh process has none)."""
    self.selector.close()
    self.listener.close()
    connection.close()
    for pidfd, (_, other) in self.running.items():
      os.close(pidfd)
      other.close()
    os.close(self.parent_fd)


def _send_line(connection, line):
  try:
    connection.sendall(line.encode() + b"\n")
  except OSError:
    pass  # the requester is gone; the child still runs to its end and is reaped


# --- a child -----------------------------------------------------------------------------------

def _run_child(request, fds, sys_path):
  """In a forked child: becomes the requested program, runs it, exits with its status."""
  code = 1
  try:
    for target, fd in enumerate(fds):
      os.dup2(fd, target)
      os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if request.get("file_size_limit") is not None:
      resource.setrlimit(resource.RLIMIT_FSIZE,
                         (request["file_size_limit"], resource.RLIM_INFINITY))
    sys.path[:] = sys_path
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    import numpy as np  # pylint: disable=g-import-not-at-top
    np.random.seed()  # a fresh process seeds numpy's global generator anew; the fork copied ours
    code = run_main(request["argv"])
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
  finally:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except (OSError, ValueError):
        pass
    os._exit(code)


def run_main(argv):
  """Runs `argv` (`[script, *args]` or `["-c", code, *args]`, as after `python`) as `__main__`
  the way the interpreter does; returns the exit status (after atexit handlers ran)."""
  if argv[0] == "-c":
    sys.argv = ["-c", *argv[2:]]
    sys.path[0] = ""
  else:
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
  try:
    if argv[0] == "-c":
      main = types.ModuleType("__main__")
      sys.modules["__main__"] = main
      exec(compile(argv[1], "<string>", "exec"), main.__dict__)  # pylint: disable=exec-used
    else:
      runpy.run_path(argv[0], run_name="__main__")
    code = 0
  except SystemExit as e:
    code = _exit_status(e)
  except BaseException:  # pylint: disable=broad-except
    kind, value, frames = sys.exc_info()
    frames = _from_program(frames, argv[0])
    sys.excepthook(kind, value.with_traceback(frames), frames)
    code = 1
  threading._shutdown()  # pylint: disable=protected-access  # waits for non-daemon threads
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  return code


def _from_program(frames, argv0):
  """The traceback `frames` without the zygote's and runpy's frames above the program's."""
  program = "<string>" if argv0 == "-c" else argv0
  tail = frames
  while tail is not None and tail.tb_frame.f_code.co_filename != program:
    tail = tail.tb_next
  return tail or frames


def _exit_status(exit_exception):
  code = exit_exception.code
  if code is None:
    return 0
  if isinstance(code, int):
    return code & 0xFF
  sys.stderr.write(f"{code}\n")
  return 1


def main():
  """`python -c "from tests import zygote; zygote.main()" SOCKET_PATH`: preloads, checks, then
  prints `ready` on stdout and serves on SOCKET_PATH until its stdin (a pipe) is closed, then
  removes SOCKET_PATH's directory."""
  preload()
  check_fork_safe()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  listener.bind(sys.argv[1])
  listener.listen(64)
  sys.stdout.write("ready\n")
  sys.stdout.flush()
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 1)
  os.close(devnull)
  Server(listener, 0).serve()
  shutil.rmtree(os.path.dirname(sys.argv[1]), ignore_errors=True)  # also when pytest was killed
