"""TrainConfig is bin/train_experts' flags: same names, defaults and recorded settings."""
import json

from tests import processes
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
