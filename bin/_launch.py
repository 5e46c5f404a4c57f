"""Starts a tfexperts binary from a clone with the right Python (standard library only).

`bin/<name>` runs with whatever `python3` is first on PATH. This module re-executes it with the
clone's `.venv/bin/python` when that exists and is not already running (the environment variable
TFEXPERTS_LAUNCHED stops a loop), so no activation is needed after `make install` / `make test`.
Without `.venv`, the current Python is used if it has tfexperts's dependencies; otherwise the
message says how to create `.venv`. The clone's own `tfexperts` package is imported first either
way, then `tfexperts.cli.<name>.run()` runs the binary.
"""
import importlib
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
_GUARD = "TFEXPERTS_LAUNCHED"
# Imported by every binary; checked without importing them (find_spec only).
_REQUIRED = ("absl", "numpy", "tensorflow")


def _in_venv():
  # The venv's python is often a symlink to the system one: compare prefixes, not executables.
  return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def _missing_modules():
  return [name for name in _REQUIRED if importlib.util.find_spec(name) is None]


def main(name):
  """Runs binary `name` (a module of tfexperts.cli) with the clone's .venv or the current Python."""
  script = os.path.abspath(sys.argv[0])
  if (os.access(VENV_PYTHON, os.X_OK) and not _in_venv()
      and os.environ.get(_GUARD) != VENV_PYTHON):
    os.environ[_GUARD] = VENV_PYTHON
    os.execv(VENV_PYTHON, [VENV_PYTHON, script] + sys.argv[1:])
  missing = _missing_modules()
  if missing:
    where = ("the clone's .venv" if _in_venv()
             else "%s (no usable %s/bin/python)" % (sys.executable, VENV))
    sys.stderr.write(
        "%s: error: %s lacks %s. Create or update .venv with `make install` (or `make test`) in "
        "%s, or install tfexperts into the active environment with `pip install -e %s`.\n"
        % (name, where, ", ".join(missing), REPO, REPO))
    sys.exit(2)
  sys.path.insert(0, REPO)
  importlib.import_module("tfexperts.cli." + name).run()
