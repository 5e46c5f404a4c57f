"""Model-patch experts ("K for the price of 1", Mudrakarta et al. 2019).

A patch expert specialises only the GroupNorm scales and biases of a frozen backbone; every
convolution (and the head) stays shared. A patch bank is a `ResNetV2(patch_experts=n)` whose
GroupNorms hold `n` rows of (gamma, beta), routed per example by expert id. An extracted patch
expert is a plain `ResNetV2` with that expert's rows, i.e. an ordinary BiT model.
"""
import numpy as np

from tfexperts.models import bit
from tfexperts.models import checkpoints


def patch_parameter_count(model):
  """Parameters one patch expert specialises: all GroupNorm scales and biases of `model`.

  Takes a built `ResNetV2` (plain or patch bank); returns an int (2 x channels per GroupNorm).
  """
  return sum(int(np.prod(v.shape[-1:])) for name, v in checkpoints.checkpoint_variables(model).items()
             if "/group_norm/" in name)


def _is_patch_variable(name):
  return "/group_norm/" in name


def create_patch_bank(baseline, num_experts):
  """Patch bank over `baseline` (a built plain `ResNetV2`): returns a built `ResNetV2`.

  Every expert's patch starts as the baseline's GroupNorm parameters, so outputs equal the
  baseline's for every id. Convolutions and the head are copied and frozen; only the GroupNorm
  banks are trainable.
  """
  if baseline.patch_experts:
    raise ValueError(f"`baseline` must be a plain ResNetV2. Received: patch_experts="
                     f"{baseline.patch_experts}")
  bank = bit.ResNetV2.from_config({**baseline.get_config(), "patch_experts": num_experts,
                                   "name": baseline.name})
  bank.build((None, None, None, 3))
  source = checkpoints.checkpoint_variables(baseline)
  for name, variable in checkpoints.checkpoint_variables(bank).items():
    value = source[name].numpy()
    if _is_patch_variable(name):
      value = np.broadcast_to(value, variable.shape)
    variable.assign(value)
  freeze_all_but_patches(bank)
  return bank


def freeze_all_but_patches(bank):
  """Marks every convolution and the head of a patch bank non-trainable; returns `bank`."""
  bank.root_block.trainable = False
  if bank.head is not None:
    bank.head.trainable = False
  for block in bank.blocks:
    for unit in block.units:
      for part in (unit.a, unit.b, unit.c):
        part.conv.trainable = False
        if part.proj is not None:
          part.proj.trainable = False
  return bank


def copy_patch(bank, expert, target):
  """Sets every GroupNorm scale and bias of `target` (a built plain `ResNetV2` of the bank's
  architecture) to row `expert` of patch bank `bank`; returns the target variables it set."""
  source = checkpoints.checkpoint_variables(bank)
  assigned = []
  for name, variable in checkpoints.checkpoint_variables(target).items():
    if _is_patch_variable(name):
      variable.assign(source[name][expert])
      assigned.append(variable)
  return assigned


def extract_patch_expert(bank, expert):
  """Plain `ResNetV2` equal to `bank` for `expert_ids == expert`; returns it built.

  Takes a patch bank and an expert index in [0, bank.patch_experts).
  """
  if isinstance(expert, bool) or not isinstance(expert, int) or not (
      0 <= expert < bank.patch_experts):
    raise ValueError(f"`expert` must be an int in [0, {bank.patch_experts}). "
                     f"Received: expert={expert!r}")
  single = bit.ResNetV2.from_config({**bank.get_config(), "patch_experts": 0})
  single.build((None, None, None, 3))
  source = checkpoints.checkpoint_variables(bank)
  for name, variable in checkpoints.checkpoint_variables(single).items():
    value = source[name].numpy()
    variable.assign(value[expert] if _is_patch_variable(name) else value)
  return single
