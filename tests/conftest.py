"""Session fixtures shared across test folders, each built once per test session (directories
once for all pytest-xdist workers, in-process objects once per worker), and the test order."""
import pytest

from tests import session_shared
from tfexperts.data import offline
# The exported tiny collection (a fake training workdir run through bin/export_experts).
from tests.hub.collection_fixtures import exported, models, workdir  # noqa: F401 pylint: disable=unused-import
# The collection converted to OpenVINO once per session (xdist workers share it).
from tests.hub.openvino_fixtures import converted_collection  # noqa: F401 pylint: disable=unused-import
# shapes_fine_tiny's select_expert run over that collection, and its feature cache.
from tests.transfer.shapes_features import shapes_select_run  # noqa: F401 pylint: disable=unused-import


def pytest_collection_modifyitems(items):
  """Runs the tests marked `slow` (end-to-end runs of a minute or more) first, last-collected first.

  `make test` spreads tests over 2 workers that take the next test as they finish one; a long run
  picked up last would leave the other worker idle until it ends. The heaviest runs are in
  tests/transfer, collected last.
  """
  slow = [item for item in items if item.get_closest_marker("slow") is not None]
  items[:] = slow[::-1] + [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture(scope="session")
def offline_data_dir(tmp_path_factory):
  """A tfds data dir with the tiny offline datasets, built once per test session (the xdist
  workers share it; tests only read it)."""
  data_dir = session_shared.build_once(
      tmp_path_factory, "tfds_offline", lambda path: offline.prepare_offline_datasets(path, "tiny"))
  before = session_shared.fingerprint(data_dir)
  yield data_dir
  session_shared.assert_unchanged(data_dir, before)
