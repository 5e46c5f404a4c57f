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


# Fixtures one xdist worker builds (minutes each, `session_shared.build_once`) while any other
# worker that needs them waits.
BUILT_ONCE_AND_WAITED_FOR = frozenset({"exported", "shapes_select_run", "converted_collection",
                                       "agreement"})
# pytest-xdist (load scheduling, --maxschedchunk=1) hands each worker its first two tests at once.
FIRST_TESTS_PER_WORKER = 2


def _waits(item):
  return BUILT_ONCE_AND_WAITED_FOR & set(item.fixturenames)


def pytest_collection_modifyitems(items):
  """Runs the tests marked `slow` (end-to-end runs of a minute or more) first, last-collected first
  (after each worker's first tests, those that wait for a fixture another worker builds come
  after those that do not).

  `make test` spreads tests over 2 workers that take the next test as they finish one; a long run
  picked up last would leave the other worker idle until it ends. The heaviest runs are in
  tests/transfer, collected last. Most of them need the exported collection, which the first
  worker to ask builds while the other waits, so the second worker's first tests are slow ones
  that need none of `BUILT_ONCE_AND_WAITED_FOR`: it works while the collection is built. Among
  the other tests, those needing a fixture of that set that an earlier test builds run last, so
  the other worker is not waiting for the build meanwhile.
  """
  slow = [item for item in items if item.get_closest_marker("slow") is not None][::-1]
  waiting = [item for item in slow if _waits(item)]
  free = [item for item in slow if item not in waiting]
  n = FIRST_TESTS_PER_WORKER
  first = waiting[:n] + free[:n]
  # Then the other free ones: by the time a worker reaches the rest of `waiting`, the first
  # worker has built what they need.
  slow = first + free[n:] + waiting[n:]
  built_by_slow = set().union(*(_waits(item) for item in slow))
  built, now, later = set(), [], []
  for item in items:
    if item.get_closest_marker("slow") is None:
      needs = _waits(item) - built_by_slow
      (later if needs & built else now).append(item)
      built |= needs
  items[:] = slow + now + later


@pytest.fixture(scope="session")
def offline_data_dir(tmp_path_factory):
  """A tfds data dir with the tiny offline datasets, built once per test session (the xdist
  workers share it; tests only read it)."""
  data_dir = session_shared.build_once(
      tmp_path_factory, "tfds_offline", lambda path: offline.prepare_offline_datasets(path, "tiny"))
  before = session_shared.fingerprint(data_dir)
  yield data_dir
  session_shared.assert_unchanged(data_dir, before)
