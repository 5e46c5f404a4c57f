"""DatConfig checks itself on construction: a bad value raises UserError naming the field, the
value and what is valid. Pure Python: no TensorFlow loads."""
import pytest

from tfexperts.errors import UserError
from tfexperts.transfer import dat_config


@pytest.mark.parametrize("field,value,valid", [
    ("steps", 0, "a positive integer"), ("batch_size", -8, "a positive integer"),
    ("checkpoint_every", 1.5, "a positive integer"), ("log_every", 0, "a positive integer"),
    ("warmup_steps", -1, "an integer >= 0"), ("resolution", 0, "a positive integer or None"),
    ("base_lr", -0.1, "a number > 0"), ("seed", -1, "an integer >= 0")])
def test_dat_config_names_the_bad_field(field, value, valid):
  with pytest.raises(UserError) as info:
    dat_config.DatConfig(**{field: value})
  assert str(info.value) == f"`{field}` must be {valid}. Received: {field}={value!r}"


def test_dat_config_defaults_pass():
  assert dat_config.DatConfig().resolution is None
