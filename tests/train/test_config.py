"""TrainConfig is bin/train_experts' flags: same names, defaults and recorded settings."""
import json

import pytest

from tests import processes
from tfexperts.errors import UserError
from tfexperts.train import config

SETTINGS = {"workdir": "/tmp/w", "dataset": "tfexperts_shapes/demo", "model": "tiny",
            "resolution": 64, "batch_size": 64, "baseline_steps": 600, "base_lr": 0.4,
            "decay": "cosine", "stage": ["baseline", "adapter"], "experts": ["a", "b"],
            "prepare_offline": False, "width": 0.5}


def _flag(name, value):
  if isinstance(value, bool):
    return f"--{name}" if value else f"--no{name}"
  return f"--{name}={','.join(value) if isinstance(value, list) else value}"


def test_flags_and_config_record_the_same_settings_and_flag_lines():
  # What the binary records (its parsed flags) equals what an in-process caller (the demo) records
  # with the same settings, so either may resume the other's workdir.
  code = ("import json, sys\nfrom tfexperts.cli import train_experts as t\n"
          "t.FLAGS(sys.argv)\n"
          "own = [f for f in t.FLAGS.flags_by_module_dict()[t.__name__] if f.value is not None]\n"
          "print(json.dumps([t.train_config().settings(), [f.serialize() for f in own]]))")
  args = [_flag(k, v) for k, v in SETTINGS.items()]
  proc = processes.run_python(code, args)
  settings, lines = json.loads(proc.stdout.strip().splitlines()[-1])
  ours = config.TrainConfig(**SETTINGS)
  assert settings == ours.settings()
  assert lines == ours.flag_lines()
  assert settings["momentum"] == 0.9 and settings["checkpoint_every"] == 100


@pytest.mark.parametrize("field,value", [
    ("batch_size", 0), ("baseline_steps", -5), ("base_lr", 0.0), ("label_smoothing", 1.0),
    ("warmup_steps", -1), ("stage", ["baseline", "distill"]), ("model", "r51x1"),
    ("strategy", "tpu"), ("decay", "linear"), ("mixed_precision", "fp8"), ("groups", 0),
    ("width", -1.0), ("seed", 1.5)])
def test_train_config_checks_what_the_flags_check(field, value):
  # An API caller (`workdir.train(TrainConfig(...))`, as the README shows) gets the same bounds
  # as the binary's flags, before anything loads.
  with pytest.raises(UserError) as info:
    config.TrainConfig(**{field: value})
  shown = value[-1] if isinstance(value, list) else value
  assert f"Received: {field}={shown!r}" in str(info.value)
  config.TrainConfig(**{field: config.default(field)})  # the defaults pass
