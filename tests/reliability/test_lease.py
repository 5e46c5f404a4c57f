"""tfexperts.lease: one writer per directory, for local paths and (against a fake) gs:// paths."""
import io
import json
import os
import socket
import time
import types

import pytest

from tfexperts import errors
from tfexperts import lease
from tests.reliability import holders


def test_a_live_holder_in_another_process_refuses_a_second_run(tmp_path):
  directory = str(tmp_path / "run")
  with holders.Holder([directory], command="train_experts --workdir=run") as holder:
    with pytest.raises(errors.UserError) as refused:
      lease.acquire(directory)
  message = str(refused.value)
  assert message.startswith(f"{directory} is in use by {socket.gethostname()} pid {holder.pid} "
                            "since ")
  assert "(train_experts --workdir=run)" in message and "--force_takeover" in message


def test_the_lease_of_a_killed_holder_is_taken_over_with_one_line(tmp_path):
  directory = str(tmp_path / "run")
  holder = holders.Holder([directory], command="first run")
  holder.kill()
  out = io.StringIO()
  with lease.acquire(directory, out=out) as held:
    assert held.holder.pid == os.getpid()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "(first run)" in lines[0]
    assert f"pid {holder.pid} is no longer running" in lines[0]
    recorded = json.load(open(os.path.join(directory, lease.LEASE_FILE)))
    assert recorded["pid"] == os.getpid()
  assert not os.path.exists(os.path.join(directory, lease.LEASE_FILE))  # released


def test_a_released_lease_is_taken_silently_and_force_takes_a_live_one(tmp_path):
  directory = str(tmp_path / "run")
  holders.Holder([directory]).stop()
  out = io.StringIO()
  lease.acquire(directory, out=out).release()
  assert out.getvalue() == ""
  with holders.Holder([directory], command="stuck run") as holder:
    with lease.acquire(directory, force=True, out=out):
      assert f"pid {holder.pid}" in out.getvalue() and "--force_takeover" in out.getvalue()


def _remote_lease(directory, silent_seconds):
  os.makedirs(directory, exist_ok=True)
  remote = lease.Holder("other-host", 4242, "2026-01-01 00:00:00 UTC", "remote run",
                        time.time() - silent_seconds, "t")
  with open(os.path.join(directory, lease.LEASE_FILE), "w") as f:
    f.write(remote.to_json())


def test_a_holder_on_another_host_counts_until_it_stops_renewing(tmp_path):
  directory = str(tmp_path / "shared")
  _remote_lease(directory, silent_seconds=5)
  with pytest.raises(lease.LeaseError, match="in use by other-host pid 4242 .*remote run"):
    lease.acquire(directory)
  _remote_lease(directory, silent_seconds=lease.STALE_SECONDS + 10)
  out = io.StringIO()
  lease.acquire(directory, out=out).release()
  assert "other-host pid 4242" in out.getvalue() and "not renewed for" in out.getvalue()


def test_all_or_none_of_several_leases_are_taken(tmp_path):
  first, second = str(tmp_path / "a"), str(tmp_path / "b")
  with holders.Holder([second]):
    with pytest.raises(lease.LeaseError):
      lease.acquire_all([first, second])
    lease.acquire(first).release()  # the refused call gave `first` back


class _FakeGcs:
  """The part of google-cloud-storage's API the lease uses, with its generation preconditions:
  a write or delete whose `if_generation_match` differs from the object's generation (0: absent)
  raises PreconditionFailed; every write makes a new generation."""

  class exceptions:  # pylint: disable=invalid-name
    class NotFound(Exception):
      pass

    class PreconditionFailed(Exception):
      pass

  def __init__(self):
    self.objects = {}  # (bucket, name) -> (generation, bytes)
    self.next_generation = 1

  def bucket(self, name):
    return _FakeBucket(self, name)


class _FakeBucket:

  def __init__(self, gcs, name):
    self.gcs, self.name = gcs, name

  def blob(self, name):
    return _FakeBlob(self.gcs, (self.name, name))


class _FakeBlob:

  def __init__(self, gcs, key):
    self.gcs, self.key, self.generation = gcs, key, None

  def _check(self, if_generation_match):
    current = self.gcs.objects.get(self.key, (0, None))[0]
    if if_generation_match is not None and if_generation_match != current:
      raise _FakeGcs.exceptions.PreconditionFailed(f"{self.key}: {if_generation_match}!={current}")

  def upload_from_string(self, data, content_type=None, if_generation_match=None):
    del content_type
    self._check(if_generation_match)
    self.generation = self.gcs.next_generation
    self.gcs.next_generation += 1
    self.gcs.objects[self.key] = (self.generation, data.encode() if isinstance(data, str) else data)

  def reload(self):
    if self.key not in self.gcs.objects:
      raise _FakeGcs.exceptions.NotFound(str(self.key))
    self.generation = self.gcs.objects[self.key][0]

  def download_as_bytes(self, if_generation_match=None):
    self.reload()
    self._check(if_generation_match)
    return self.gcs.objects[self.key][1]

  def delete(self, if_generation_match=None):
    if self.key not in self.gcs.objects:
      raise _FakeGcs.exceptions.NotFound(str(self.key))
    self._check(if_generation_match)
    del self.gcs.objects[self.key]


@pytest.fixture
def gcs(monkeypatch):
  fake = _FakeGcs()
  monkeypatch.setattr(lease._GcsStore, "client_factory",  # pylint: disable=protected-access
                      lambda: fake)
  return fake


def test_gcs_lease_is_created_only_if_absent_and_replaced_only_when_stale(gcs):
  key = ("bucket", "runs/a/" + lease.LEASE_FILE)
  first = lease.acquire("gs://bucket/runs/a", command="run on vm-1")
  assert json.loads(gcs.objects[key][1])["command"] == "run on vm-1"
  with pytest.raises(lease.LeaseError, match="gs://bucket/runs/a is in use by .*pid .*vm-1"):
    lease.acquire("gs://bucket/runs/a")
  generation, data = gcs.objects[key]
  stale = json.loads(data)
  stale["renewed"] -= lease.STALE_SECONDS + 1
  gcs.objects[key] = (generation, json.dumps(stale).encode())
  out = io.StringIO()
  second = lease.acquire("gs://bucket/runs/a", command="run on vm-2", out=out)
  assert "(run on vm-1): not renewed for" in out.getvalue()
  assert not first._store.renew(first.holder)  # pylint: disable=protected-access
  assert second._store.renew(second.holder)  # pylint: disable=protected-access
  first.release()  # not its lease any more: leaves it in place
  assert json.loads(gcs.objects[key][1])["command"] == "run on vm-2"
  second.release()
  assert key not in gcs.objects


def test_gcs_without_the_client_library_is_a_clear_error(monkeypatch):
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def no_gcs(name, *args, **kwargs):
    if name.startswith("google.cloud") or name.startswith("google.api_core"):
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_gcs)
  with pytest.raises(errors.UserError, match=r"pip install tfexperts\[gcs\]"):
    lease.acquire("gs://bucket/runs/b")


@pytest.mark.parametrize("task,cluster,chief", [
    ({"type": "worker", "index": 0}, {"worker": ["a:1", "b:1"]}, True),
    ({"type": "worker", "index": 1}, {"worker": ["a:1", "b:1"]}, False),
    ({"type": "worker", "index": 0}, {"chief": ["c:1"], "worker": ["a:1"]}, False),
    ({"type": "chief", "index": 0}, {"chief": ["c:1"], "worker": ["a:1"]}, True),
])
def test_only_the_chief_of_a_multi_worker_cluster_takes_the_lease(tmp_path, monkeypatch, task,
                                                                  cluster, chief):
  from tfexperts.cli import run as run_lib  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path / "run")
  monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
  assert run_lib.multi_worker_chief() is chief
  with holders.Holder([directory]):
    if chief:
      monkeypatch.setattr(run_lib, "FLAGS", types.SimpleNamespace(force_takeover=False))
      with pytest.raises(lease.LeaseError):
        run_lib.take_leases(directory)
    else:
      assert run_lib.take_leases(directory) == []  # a worker beside the chief is not refused


def test_renewal_refreshes_the_lease_and_stops_once_it_was_forced_away(tmp_path):
  directory = str(tmp_path / "run")
  first = lease.acquire(directory)
  path = os.path.join(directory, lease.LEASE_FILE)
  first.holder.renewed -= 100  # as if written 100 s ago
  first._store._write(first.holder)  # pylint: disable=protected-access
  before = json.load(open(path))["renewed"]
  assert first._store.renew(first.holder)  # pylint: disable=protected-access
  assert json.load(open(path))["renewed"] >= before + 99
  second = lease.acquire(directory, force=True, out=io.StringIO())
  assert not first._store.renew(first.holder)  # pylint: disable=protected-access
  first.release()  # leaves the new holder's lease in place
  assert json.load(open(path))["token"] == second.holder.token
  second.release()
  assert not os.path.exists(path)
