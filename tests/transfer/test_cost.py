"""Image counts of selection and of the VTAB protocol, against hand-computed totals."""
import pytest

from tfexperts.transfer import cost
from tfexperts.transfer import protocol


def test_protocol_images_of_the_default_and_quick_protocols():
  full = protocol.ProtocolConfig()
  # Sweep: 2 lr x (2500 + 10000) steps x 512; retrains: 3 x best steps x 512.
  assert cost.protocol_images(full, test_size=1000) == cost.Images(
      train=2 * 12500 * 512 + 3 * 10000 * 512, forward=4 * 200 + 3 * 1000)
  assert cost.protocol_images(full, best_steps=2500).train == 2 * 12500 * 512 + 3 * 2500 * 512
  quick = protocol.ProtocolConfig.quick(steps=(100,))
  assert cost.protocol_images(quick, test_size=1000) == cost.Images(
      train=2 * 100 * 32 + 100 * 32, forward=2 * 200 + 1000)
  with pytest.raises(ValueError, match="777"):
    cost.protocol_images(full, best_steps=777)


def test_selection_against_fine_tuning_all():
  knn = cost.knn_images(48, 1000)
  assert knn == cost.Images(train=0, forward=48000)
  assert knn.seconds(train_per_second=1.0, forward_per_second=100.0) == 480.0
  quick = protocol.ProtocolConfig.quick(steps=(100,))
  assert cost.finetune_all_images(48, quick, test_size=1000) == cost.Images(
      train=48 * 9600, forward=48 * 1400)
