"""Commands run at the same time as child processes, their output shown line by line.

Each line a child prints appears on this process's stdout prefixed with `[name] `, and goes
unprefixed to `LOG_DIR/name.log` (appended, so a resumed run keeps the earlier attempt's lines).
Used by the demo to keep both cores of a small machine busy with two independent parts.
"""
import os
import subprocess
import sys
import threading
import time

from tfexperts import errors


def _copy_lines(name, stream, log_path, print_lock):
  """Copies each line of `stream` to stdout (prefixed with `[name] `) and to `log_path`."""
  with open(log_path, "a") as log:
    for line in stream:
      log.write(line)
      log.flush()
      with print_lock:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def run(commands, log_dir, env=None):
  """Runs `commands` ({name: argv list}) at once and waits for all of them.

  Args:
    commands: an ordered mapping from a short name (log file name and output prefix) to the
      argv of a child process.
    log_dir: directory of the `name.log` files (created).
    env: the children's environment (default: this process's).

  Returns:
    {name: seconds from the start until that child ended}.

  Raises:
    UserError: if `commands` is empty or a name is not a plain file name.
    RuntimeError: naming every child that failed, its exit code and log, after all ended.
  """
  if not commands:
    raise errors.UserError("side_by_side.run needs at least one command; got none.")
  bad = [n for n in commands if not n or os.sep in n or n.startswith(".")]
  if bad:
    raise errors.UserError(f"Command names become log file names; these are not plain file "
                           f"names: {bad}.")
  os.makedirs(log_dir, exist_ok=True)
  start = time.perf_counter()
  print_lock = threading.Lock()
  children, copiers = {}, []
  try:
    for name, argv in commands.items():
      children[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, bufsize=1, env=env)
      copier = threading.Thread(target=_copy_lines, daemon=True, args=(
          name, children[name].stdout, os.path.join(log_dir, f"{name}.log"), print_lock))
      copier.start()
      copiers.append(copier)
    seconds = {}
    pending = dict(children)
    while pending:
      for name, child in list(pending.items()):
        if child.poll() is not None:
          seconds[name] = time.perf_counter() - start
          del pending[name]
      time.sleep(0.2)
  finally:
    for child in children.values():  # Only still-running ones: after an error or Ctrl-C here.
      if child.poll() is None:
        child.terminate()
    for child in children.values():
      child.wait()
    for copier in copiers:
      copier.join()
  failed = [f"{name} (exit code {child.returncode}; output in "
            f"{os.path.join(log_dir, name + '.log')})"
            for name, child in children.items() if child.returncode != 0]
  if failed:
    raise RuntimeError("These parts failed: " + "; ".join(failed))
  return seconds
