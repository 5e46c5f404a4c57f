"""LoopConfig checks itself on construction (UserError naming the field, value and bounds), and
BiT's learning-rate scaling is one closed form. Pure Python: no TensorFlow loads."""
import pytest

from tfexperts.errors import UserError
from tfexperts.train import config
from tfexperts.train import loop_config
from tfexperts.transfer import dat_config

REQUIRED = {"total_steps": 10, "global_batch_size": 8}


@pytest.mark.parametrize("field,value,valid", [
    ("total_steps", 0, "a positive integer"), ("global_batch_size", 2.5, "a positive integer"),
    ("checkpoint_every", -1, "a positive integer"), ("log_every", True, "a positive integer"),
    ("steps_per_loop", 0, "a positive integer"), ("base_lr", 0.0, "a number > 0"),
    ("momentum", -0.1, "a number >= 0"), ("weight_decay", -1e-4, "a number >= 0"),
    ("mixup_alpha", float("nan"), "a number >= 0"), ("label_smoothing", 1.0, "a number in [0, 1)"),
    ("warmup_steps", -1, "an integer >= 0"), ("decay", "linear", "one of ['step', 'cosine']"),
    ("seed", 1.5, "an integer >= 0"), ("multi_label", "yes", "one of [False, True]"),
    ("loss_scaling", None, "one of [False, True]")])
def test_loop_config_names_the_bad_field(field, value, valid):
  with pytest.raises(UserError) as info:
    loop_config.LoopConfig(**{**REQUIRED, field: value})
  assert str(info.value).startswith(f"`{field}` must be {valid}"), str(info.value)
  assert f"Received: {field}={value!r}" in str(info.value)


def test_learning_rate_is_the_rate_at_batch_512_scaled_to_the_batch():
  assert loop_config.LoopConfig(**REQUIRED).learning_rate == 0.003 * 8 / 512
  assert loop_config.LoopConfig(total_steps=1, global_batch_size=512, base_lr=0.01
                                ).learning_rate == 0.01
  assert loop_config.learning_rate_at(0.1, 1024) == 0.2
  with pytest.raises(UserError, match="Received: batch_size=0"):
    loop_config.learning_rate_at(0.1, 0)


def test_taking_carries_every_field_of_the_same_name_and_checks():
  train = config.TrainConfig(base_lr=0.2, momentum=0.8, warmup_steps=7, decay="cosine",
                             weight_decay=1e-4, label_smoothing=0.1, mixup_alpha=0.2,
                             checkpoint_every=9, log_every=3, steps_per_loop=2, seed=5)
  loop = loop_config.LoopConfig.taking(train, total_steps=10, global_batch_size=train.batch_size)
  assert loop == loop_config.LoopConfig(
      total_steps=10, global_batch_size=512, base_lr=0.2, momentum=0.8, warmup_steps=7,
      decay="cosine", weight_decay=1e-4, label_smoothing=0.1, mixup_alpha=0.2,
      checkpoint_every=9, log_every=3, steps_per_loop=2, seed=5)
  dat = dat_config.DatConfig(base_lr=0.05, warmup_steps=3, checkpoint_every=4, log_every=2,
                             seed=1)
  assert loop_config.LoopConfig.taking(dat, total_steps=5, global_batch_size=8) == (
      loop_config.LoopConfig(total_steps=5, global_batch_size=8, base_lr=0.05, warmup_steps=3,
                             checkpoint_every=4, log_every=2, seed=1))
  with pytest.raises(UserError, match="Received: total_steps=0"):
    loop_config.LoopConfig.taking(dat, total_steps=0, global_batch_size=8)
