"""side_by_side.run: children run at once, their lines arrive prefixed and logged, failures name
the child and its log."""
import os
import sys
import time

import pytest

from tfexperts import errors
from tfexperts import side_by_side

# Each child waits until the other has started (a file per child), so they can only end if they
# run at the same time; the timeout makes a sequential run fail instead of hang.
_WAIT_FOR_PEER = """
import os, sys, time
me, peer, directory = sys.argv[1], sys.argv[2], sys.argv[3]
open(os.path.join(directory, me), "w").close()
deadline = time.time() + 60
while not os.path.exists(os.path.join(directory, peer)):
  if time.time() > deadline:
    sys.exit("peer never started")
  time.sleep(0.05)
print(f"{me} saw {peer}", flush=True)
print(f"{me} done", flush=True)
"""


def test_children_run_at_once_and_their_lines_are_prefixed_and_logged(tmp_path, capsys):
  commands = {name: [sys.executable, "-c", _WAIT_FOR_PEER, name, peer, str(tmp_path)]
              for name, peer in (("a", "b"), ("b", "a"))}
  seconds = side_by_side.run(commands, str(tmp_path / "logs"))
  assert sorted(seconds) == ["a", "b"]
  out = capsys.readouterr().out.splitlines()
  for name, peer in (("a", "b"), ("b", "a")):
    mine = [line for line in out if line.startswith(f"[{name}] ")]
    assert mine == [f"[{name}] {name} saw {peer}", f"[{name}] {name} done"]
    with open(tmp_path / "logs" / f"{name}.log") as log:
      assert log.read() == f"{name} saw {peer}\n{name} done\n"


def test_a_failed_child_is_named_with_its_exit_code_and_log_after_the_others_end(tmp_path):
  marker = tmp_path / "finished"
  commands = {"ok": [sys.executable, "-c",
                     f"import time; time.sleep(1); open({str(marker)!r}, 'w').close()"],
              "bad": [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]}
  with pytest.raises(RuntimeError) as raised:
    side_by_side.run(commands, str(tmp_path / "logs"))
  message = str(raised.value)
  assert "bad (exit code 3" in message and "ok" not in message.replace("bad", "")
  assert os.path.join(str(tmp_path / "logs"), "bad.log") in message
  assert marker.exists()  # the other child was waited for, not killed
  with open(tmp_path / "logs" / "bad.log") as log:
    assert log.read() == "boom\n"


def test_log_is_appended_on_a_second_run(tmp_path):
  command = {"once": [sys.executable, "-c", "print('line')"]}
  side_by_side.run(command, str(tmp_path))
  side_by_side.run(command, str(tmp_path))
  with open(tmp_path / "once.log") as log:
    assert log.read() == "line\nline\n"


@pytest.mark.parametrize("commands", [{}, {"a/b": ["true"]}, {"": ["true"]}])
def test_bad_commands_are_refused_naming_them(commands, tmp_path):
  with pytest.raises(errors.UserError, match="command|file names"):
    side_by_side.run(commands, str(tmp_path))
