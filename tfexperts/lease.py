"""An exclusive lease on an output directory: one writer per workdir, collection or results dir.

A binary takes the lease when it starts (before TensorFlow loads) and holds it until it exits.
A second run on the same directory is refused with
`<dir> is in use by <host> pid <pid> since <time> (<command>)`; a lease whose holder is gone is
taken over with one printed line saying so; `force=True` (--force_takeover) takes it regardless.

Local paths: an advisory `fcntl` lock on `<dir>/.tfexperts-lease.lock` (the kernel frees it when
the holder dies, even by kill -9) plus the lease file `<dir>/.tfexperts-lease.json` (host, pid,
start time, command, last renewal), written atomically and renewed by a heartbeat thread. The
renewal matters when the directory is shared between machines (NFS), where the lock is only seen
on one host: a lease from another host is stale once not renewed for `STALE_SECONDS`.

`gs://` paths: the lease object `<dir>/.tfexperts-lease.json` is created with the precondition
`if_generation_match=0` (GCS's create-if-absent, which `tf.io.gfile` lacks), renewed by the same
heartbeat with `if_generation_match=<our generation>`, and replaced only through a generation
precondition, so of two runs starting together exactly one wins. Needs google-cloud-storage
(`pip install tfexperts[gcs]`).
"""
import atexit
import datetime
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid

from tfexperts import errors

LEASE_FILE = ".tfexperts-lease.json"
LOCK_FILE = ".tfexperts-lease.lock"
RENEW_SECONDS = 30.0
STALE_SECONDS = 300.0  # a holder on another host silent this long is taken to be gone
_READ_RETRIES = 20  # the lock holder writes its lease file just after locking: wait for it


class LeaseError(errors.UserError):
  """The directory is held by another run that still looks alive."""


def this_command():
  """The command line of this process, as shown to a run that is refused."""
  return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else "python"


class Holder:
  """Who holds a lease: `host`, `pid`, `since` (ISO time), `command`, `renewed` (epoch s)."""

  def __init__(self, host, pid, since, command, renewed, token=""):
    self.host, self.pid, self.since, self.command = host, int(pid), since, command
    self.renewed, self.token = float(renewed), token

  @classmethod
  def me(cls, command=None):
    """A holder describing this process (a fresh token tells two leases of one pid apart)."""
    now = time.time()
    since = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")
    return cls(socket.gethostname(), os.getpid(), since, command or this_command(), now,
               uuid.uuid4().hex)

  @classmethod
  def from_json(cls, text):
    """Parses a lease file's text; returns None when it is not a lease (empty, truncated)."""
    try:
      d = json.loads(text)
      return cls(d["host"], d["pid"], d["since"], d["command"], d["renewed"], d.get("token", ""))
    except (ValueError, KeyError, TypeError):
      return None

  def to_json(self):
    """The lease file's text."""
    return json.dumps({"host": self.host, "pid": self.pid, "since": self.since,
                       "command": self.command, "renewed": self.renewed, "token": self.token},
                      indent=2, sort_keys=True) + "\n"

  def describe(self):
    """`<host> pid <pid> since <time> (<command>)`."""
    return f"{self.host} pid {self.pid} since {self.since} ({self.command})"

  def is_local(self):
    """True when the holder ran on this machine."""
    return self.host == socket.gethostname()

  def silent_for(self, now=None):
    """Seconds since the holder last renewed its lease."""
    return (time.time() if now is None else now) - self.renewed


def pid_alive(pid):
  """True when a process `pid` exists on this machine."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _refusal(directory, holder):
  shown = holder.describe() if holder else "another process (its lease file is not readable)"
  return LeaseError(f"{directory} is in use by {shown}. Wait for it to finish, or pass "
                    "--force_takeover if you know it is gone (two writers would interleave "
                    "their checkpoints and results).")


def _announce(directory, previous, reason, out):
  out.write(f"Taking over the lease on {directory} from {previous.describe()}: {reason}.\n")
  out.flush()


class Lease:
  """A held lease; `release()` (or leaving a `with` block, or exit) gives it up."""

  def __init__(self, directory, holder, store):
    self.directory, self.holder, self._store = directory, holder, store
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                    name=f"lease-heartbeat {directory}")
    self._thread.start()
    atexit.register(self.release)

  def _heartbeat(self):
    while not self._stop.wait(RENEW_SECONDS):
      try:
        if not self._store.renew(self.holder):
          sys.stderr.write(f"warning: the lease on {self.directory} was taken over by another "
                           "run (--force_takeover); this run no longer holds it.\n")
          return
      except Exception as e:  # pylint: disable=broad-except  (a missed renewal is not fatal)
        sys.stderr.write(f"warning: could not renew the lease on {self.directory}: {e}\n")

  def release(self):
    """Stops the heartbeat and removes the lease (if still ours). Safe to call twice."""
    if self._stop.is_set():
      return
    self._stop.set()
    self._store.release(self.holder)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def acquire(directory, force=False, command=None, out=None):
  """Takes the exclusive lease on `directory` (a local path or `gs://...`; created if missing).

  Args:
    directory: the output directory the caller is about to write.
    force: take the lease even from a holder that still looks alive (--force_takeover).
    command: the command shown to a refused run (default: this process's command line).
    out: where the takeover line goes (default: sys.stdout).

  Returns:
    A `Lease`, held until `release()` or process exit. Raises `LeaseError` (a UserError) naming the
    holder when another live run holds it.
  """
  out = out or sys.stdout
  me = Holder.me(command)
  store = _GcsStore(directory) if directory.startswith("gs://") else _LocalStore(directory)
  store.take(me, force, out)
  return Lease(directory, me, store)


def acquire_all(directories, force=False, command=None, out=None):
  """Takes the leases on every directory in `directories`, or none (releasing those taken when
  one is refused). Returns the list of `Lease`s."""
  taken = []
  try:
    for directory in directories:
      taken.append(acquire(directory, force, command, out))
  except BaseException:
    for lease in taken:
      lease.release()
    raise
  return taken


class _LocalStore:
  """Lease state on a local filesystem: a flock plus the lease file."""

  def __init__(self, directory):
    self.directory = directory
    self.path = os.path.join(directory, LEASE_FILE)
    self._fd = None

  def _read(self):
    try:
      with open(self.path) as f:
        return Holder.from_json(f.read())
    except FileNotFoundError:
      return None

  def _write(self, holder):
    from tfexperts import fileio  # pylint: disable=g-import-not-at-top  (no TensorFlow import)
    tmp = f"{self.path}.tmp-{uuid.uuid4().hex}"
    text = holder.to_json().encode()
    try:
      with fileio.disk_writes(self.path, len(text)):
        with open(tmp, "wb") as f:
          f.write(text)
        os.replace(tmp, self.path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)

  def take(self, me, force, out):
    """Locks and writes the lease for `me`, or raises LeaseError naming the live holder."""
    import fcntl  # pylint: disable=g-import-not-at-top  (POSIX only)
    os.makedirs(self.directory, exist_ok=True)
    fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      locked = True
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        os.close(fd)
        raise
      locked = False
    previous = self._read()
    if not locked:
      for _ in range(_READ_RETRIES):
        if previous is not None:
          break
        time.sleep(0.05)
        previous = self._read()
      if not force:
        os.close(fd)
        raise _refusal(self.directory, previous)
      reason = "--force_takeover (it still holds the lock)"
    elif previous is None:
      reason = None
    elif not previous.is_local():
      silent = previous.silent_for()
      if silent < STALE_SECONDS and not force:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise _refusal(self.directory, previous)
      reason = (f"not renewed for {silent:.0f} s" if silent >= STALE_SECONDS
                else "--force_takeover")
    elif pid_alive(previous.pid) and previous.pid != os.getpid():
      reason = f"pid {previous.pid} no longer holds the lock"
    else:
      reason = f"pid {previous.pid} is no longer running"
    if previous is not None and reason is not None:
      _announce(self.directory, previous, reason, out)
    self._fd = fd if locked else None
    if not locked:
      os.close(fd)
    try:
      self._write(me)
    except BaseException:
      self._unlock()
      raise

  def renew(self, me):
    """Rewrites the lease with a fresh renewal time; False when another run has taken it."""
    current = self._read()
    if current is not None and current.token != me.token:
      return False
    me.renewed = time.time()
    self._write(me)
    return True

  def _unlock(self):
    if self._fd is not None:
      os.close(self._fd)  # closing the descriptor releases the flock
      self._fd = None

  def release(self, me):
    """Removes the lease file if it is still `me`'s, then unlocks."""
    try:
      current = self._read()
      if current is not None and current.token == me.token:
        os.remove(self.path)
    except OSError:
      pass
    finally:
      self._unlock()


def _storage():
  try:
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.UserError("Leasing a gs:// directory needs google-cloud-storage: "
                           "`pip install tfexperts[gcs]` (or pip install google-cloud-storage)."
                           ) from None
  return storage, exceptions


class _GcsStore:
  """Lease state in a GCS object, changed only under generation preconditions."""

  client_factory = None  # tests may set a callable returning a fake `storage.Client`

  def __init__(self, directory):
    self.directory = directory.rstrip("/")
    bucket, _, prefix = self.directory[len("gs://"):].partition("/")
    self.bucket_name, self.object_name = bucket, f"{prefix}/{LEASE_FILE}" if prefix else LEASE_FILE
    self.generation = None
    self._cached = None

  def _blob(self):
    """`(blob, exceptions module)`: one client and blob per store, made on first use."""
    if self._cached is None:
      if _GcsStore.client_factory is not None:
        client = _GcsStore.client_factory()
        exceptions = client.exceptions
      else:
        storage, exceptions = _storage()
        client = storage.Client()
      self._cached = client.bucket(self.bucket_name).blob(self.object_name), exceptions
    return self._cached

  def _read(self, blob):
    """`(holder, generation)` of the current lease object, or `(None, None)` when absent."""
    _, exceptions = self._blob()
    try:
      blob.reload()
      text = blob.download_as_bytes(if_generation_match=blob.generation).decode()
    except (exceptions.NotFound, exceptions.PreconditionFailed):
      return None, None
    return Holder.from_json(text), blob.generation

  def take(self, me, force, out):
    """Creates the lease object for `me` (or replaces a stale / forced one under its generation);
    raises LeaseError naming a live holder."""
    blob, exceptions = self._blob()
    for _ in range(3):  # a lost race re-reads who won
      try:
        blob.upload_from_string(me.to_json(), content_type="application/json",
                                if_generation_match=0)
        self.generation = blob.generation
        return
      except exceptions.PreconditionFailed:
        pass
      previous, generation = self._read(blob)
      if generation is None:
        continue  # released meanwhile: try to create again
      if previous is None:
        reason = "its lease object is not readable"
      elif previous.silent_for() >= STALE_SECONDS:
        reason = f"not renewed for {previous.silent_for():.0f} s"
      elif force:
        reason = "--force_takeover"
      else:
        raise _refusal(self.directory, previous)
      try:
        blob.upload_from_string(me.to_json(), content_type="application/json",
                                if_generation_match=generation)
      except exceptions.PreconditionFailed:
        continue  # someone else replaced it first
      if previous is not None:
        _announce(self.directory, previous, reason, out)
      self.generation = blob.generation
      return
    raise _refusal(self.directory, self._read(blob)[0])

  def renew(self, me):
    """Rewrites the lease if it is still ours (same generation); False when it was taken."""
    blob, exceptions = self._blob()
    me.renewed = time.time()
    try:
      blob.upload_from_string(me.to_json(), content_type="application/json",
                              if_generation_match=self.generation)
    except exceptions.PreconditionFailed:
      return False
    self.generation = blob.generation
    return True

  def release(self, me):
    """Deletes the lease object if it is still ours."""
    del me
    blob, exceptions = self._blob()
    try:
      blob.delete(if_generation_match=self.generation)
    except (exceptions.NotFound, exceptions.PreconditionFailed):
      pass
