"""Session fixtures: the offline datasets and a small multi-label dataset, built once with tfds."""
import pytest
import tensorflow_datasets as tfds

from tests.data import multilabel_dataset  # noqa: F401  (registers tfexperts_test_multilabel)


@pytest.fixture(scope="session")
def multilabel_data_dir(tmp_path_factory):
  """A tfds data dir holding `tfexperts_test_multilabel`."""
  data_dir = str(tmp_path_factory.mktemp("tfds_multilabel"))
  tfds.builder("tfexperts_test_multilabel", data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return data_dir
