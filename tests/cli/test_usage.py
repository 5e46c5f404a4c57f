"""`--help` names each binary as it was run: `bin/NAME` from a clone, `NAME` when installed."""
import os
import sys

import pytest

from tests import processes
from tfexperts.cli import run


def test_usage_as_run_rewrites_only_launcher_paths():
  doc = "bin/vtab_eval: x\n  bin/vtab_eval --a\n  then bin/export_experts; /opt/bin/vtab_eval"
  assert run.usage_as_run(doc, os.path.join(processes.REPO, "bin", "vtab_eval")) == doc
  assert run.usage_as_run(doc, "/usr/local/bin/vtab_eval") == (
      "vtab_eval: x\n  vtab_eval --a\n  then export_experts; /opt/bin/vtab_eval")


@pytest.mark.parametrize("installed", [False, True])
def test_help_names_the_program_as_run(installed):
  script = (os.path.join(os.path.dirname(sys.executable), "select_expert") if installed
            else os.path.join(processes.REPO, "bin", "select_expert"))
  if installed and not os.path.exists(script):
    pytest.skip(f"no console script beside {sys.executable} (tfexperts not pip-installed there)")
  result = processes.run([script, "--help"], timeout=120)
  shown = "select_expert" if installed else "bin/select_expert"
  assert result.stdout.startswith(f"{shown}: "), result.stdout[:80]
  assert f"Usage: {shown} " in result.stdout
  if installed:
    assert "bin/" not in result.stdout.split("flags of")[0]
