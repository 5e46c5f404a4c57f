"""A --tpu address that accepts connections but never answers gRPC fails within the timeout."""
import socket
import threading
import time

import pytest

from tfexperts.errors import UserError
from tfexperts.train import strategy


def test_silent_listener_fails_within_the_timeout_naming_the_address():
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  accepted = []
  stop = threading.Event()

  def accept_and_stay_silent():
    listener.settimeout(0.2)
    while not stop.is_set():
      try:
        accepted.append(listener.accept()[0])
      except OSError:
        pass

  threading.Thread(target=accept_and_stay_silent, daemon=True).start()
  address = f"grpc://127.0.0.1:{listener.getsockname()[1]}"
  outcome = {}

  def attempt():  # in a thread, so a hang fails this test instead of blocking the suite
    start = time.monotonic()
    try:
      strategy.make_strategy(address, tpu_timeout=2.0)
    except Exception as e:  # pylint: disable=broad-except
      outcome["error"] = e
    outcome["seconds"] = time.monotonic() - start

  thread = threading.Thread(target=attempt, daemon=True)
  thread.start()
  thread.join(30)
  stop.set()
  for conn in accepted:
    conn.close()
  listener.close()
  assert not thread.is_alive(), "make_strategy still waiting after 30 s"
  assert isinstance(outcome.get("error"), UserError), outcome
  assert address in str(outcome["error"]) and "--tpu_timeout" in str(outcome["error"])
  assert outcome["seconds"] < 10
  assert accepted  # the address was reached: it is the gRPC answer that never came


def test_timeout_must_be_positive():
  with pytest.raises(UserError, match="tpu_timeout.*-1"):
    strategy.make_strategy("grpc://127.0.0.1:1", tpu_timeout=-1)
