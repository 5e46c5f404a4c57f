"""A shared fixture (registered in tests/conftest.py): bin/select_expert --proxy=all on
shapes_fine_tiny over the exported tiny collection, run once per test session (for all xdist
workers).

Its run is the first half of test_vtab_eval's select_expert test; its feature cache (every pool
expert's train800 pre-logits and the baseline's and EPN's logits at 32 px) then serves the
bin/vtab_eval runs on shapes_fine_tiny whose point is not embedding (`--cache_dir`), so each of
them skips embedding the pool again.
"""
import dataclasses
import json
import os
import shutil

import pytest

from tests import processes
from tests import session_shared


@dataclasses.dataclass
class SelectRun:
  args: list  # the select_expert flags; running them again reads the cache
  stdout: str  # the first run's
  ranking: dict  # the first run's ranking.json
  ranking_path: str
  cache_dir: str  # pass as --cache_dir to share the embedded features


def _args(exported, offline_data_dir, root):
  return ["--task=shapes_fine_tiny", f"--experts={exported.collection_dir}", "--proxy=all",
          f"--data_dir={offline_data_dir}", f"--cache_dir={root}/cache",
          f"--output_dir={root}/out"]


def _first_run(args, root):
  proc = processes.run_binary("select_expert", args)
  with open(os.path.join(root, "stdout.txt"), "w") as f:
    f.write(proc.stdout)


@pytest.fixture(scope="session")
def shapes_select_run(exported, offline_data_dir, tmp_path_factory):
  """bin/select_expert --proxy=all on shapes_fine_tiny with a fresh cache: a `SelectRun`.

  The run happens once per session (the first xdist worker to get here); each worker gets its own
  copy of its cache and output directories, which its tests may write into.
  """
  shared = session_shared.build_once(
      tmp_path_factory, "shapes_select",
      lambda path: _first_run(_args(exported, offline_data_dir, path), path))
  root = str(tmp_path_factory.mktemp("shapes_select_copy"))
  shutil.copytree(shared, root, dirs_exist_ok=True)
  with open(os.path.join(root, "stdout.txt")) as f:
    stdout = f.read()
  ranking_path = os.path.join(root, "out", "shapes_fine_tiny", "ranking.json")
  with open(ranking_path) as f:
    ranking = json.load(f)
  return SelectRun(_args(exported, offline_data_dir, root), stdout, ranking, ranking_path,
                   os.path.join(root, "cache"))
