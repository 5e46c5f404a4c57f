"""Session fixtures shared across test folders, each built once per test session."""
import pytest

from tfexperts.data import offline
# The exported tiny collection (a fake training workdir run through bin/export_experts).
from tests.hub.collection_fixtures import exported, models, workdir  # noqa: F401 pylint: disable=unused-import


@pytest.fixture(scope="session")
def offline_data_dir(tmp_path_factory):
  """A tfds data dir with the tiny offline datasets, built once per test session."""
  data_dir = str(tmp_path_factory.mktemp("tfds_offline"))
  offline.prepare_offline_datasets(data_dir, "tiny")
  return data_dir
