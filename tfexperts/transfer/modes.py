"""Downstream fine-tuning modes: which parameters train besides the new zero-initialised head.

  full     every weight of the expert (today's default: the module's SavedModel, `TFSMLayer`)
  patch    every GroupNorm's scale (gamma) and bias (beta) of the expert's ResNet: the
           scales-and-biases model patch of Mudrakarta et al., "K for the price of 1"
  adapter  a fresh residual adapter before each block (`models.adapters.AdaptedExpert`,
           zero-initialised so it starts as the identity); the expert is frozen
  head     the head only (logits-only fine-tuning on the frozen expert)

`patch` and `adapter` train a Keras model of the expert rebuilt in-process
(`hub.native.trainable_model`), so they need one of tfexperts' own modules; `head` uses that
rebuild when it exists, else the module's SavedModel, frozen. On R50x1 a patch has 45,440
parameters (0.19% of 23,500,352) and an adapter 1,385,920 (5.9%), plus the head's
feature_dim * classes + classes.
"""
import numpy as np

from tfexperts import bounds
from tfexperts import defaults
from tfexperts import errors
from tfexperts import precision as precision_lib
from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.models import patches

MODES = defaults.FINETUNE_MODES
FULL = "full"
NATIVE_ONLY = ("patch", "adapter")  # modes that need the expert rebuilt as a Keras model


def check(finetune):
  """Returns `finetune` when it is one of MODES, else raises UserError naming it and the choices."""
  return bounds.one_of("finetune", finetune, MODES)


def rebuild_error(finetune, handle, third_party):
  """The UserError for a mode that needs the expert rebuilt (`patch`, `adapter`, or an export)
  when module `handle` cannot be: `third_party` says it has no tfexperts metadata."""
  why = ("it has no tfexperts metadata (a third-party module)" if third_party else
         "tfexperts cannot rebuild it (a bank, a handle with options, or a module that does not "
         "reproduce its check features)")
  return errors.UserError(
      f"--finetune={finetune} trains parts of the expert rebuilt as a Keras model, which only "
      f"tfexperts' own expert modules allow; module {handle} cannot be: {why}. Use "
      "--finetune=head or --finetune=full for it.")


def prepare(expert, finetune, precision="float32", seed=0):
  """The expert part of a transfer model in mode `finetune`, with that mode's variables trainable.

  Takes a built expert: for `patch` and `adapter` a native Keras model (`ResNetV2` or single
  `AdapterExpertModel`), for `full` and `head` also a `TFSMLayer`. `full` returns it as it is;
  `head` freezes it; `patch` freezes all but the ResNet's GroupNorms (the expert's own adapters
  and upstream head freeze too); `adapter` freezes it and returns an `AdaptedExpert` around it,
  built at `precision`, whose new adapters' first convs start from `seed`.
  """
  check(finetune)
  if finetune == FULL:
    return expert
  if finetune == "patch":
    expert.trainable = True
    patches.freeze_all_but_patches(getattr(expert, "backbone", expert))
    for adapter in getattr(expert, "adapters", []):
      adapter.trainable = False
    return expert
  expert.trainable = False
  if finetune == "head":
    return expert
  with precision_lib.policy_scope(precision):
    return adapters.AdaptedExpert(expert, seed=seed)


def trained_variables(model):
  """The variables fine-tuning updates, in the model's (deterministic) order."""
  return list(model.trainable_variables)


def count(variables):
  """Number of scalars in `variables`."""
  return int(sum(np.prod(v.shape, dtype=np.int64) for v in variables))


def group_norm_channels(units, width):
  """Channels of every GroupNorm of a BiT ResNet-v2 with `units` per block and `width`, by the
  architecture's formula: per unit its input's channels (`a`), then F twice (`b`, `c`), and the
  final GroupNorm's 4F of the last block (F = 64, 128, 256, 512 x width)."""
  channels, sizes = round(bit.ROOT_FILTERS * width), []
  for num_units, filters in zip(units, bit.BLOCK_FILTERS):
    filters = round(filters * width)
    for _ in range(num_units):
      sizes += [channels, filters, filters]
      channels = filters * bit.EXPANSION
  return sizes + [channels]


def closed_form(finetune, units, width, num_classes):
  """Closed-form trained parameters of mode `finetune` on a BiT ResNet-v2 (`units` per block,
  `width`) with a new head of `num_classes`: the head's feature_dim * classes + classes, plus for
  patch 2 x every GroupNorm's channels (`group_norm_channels`), for adapter the sum over the
  blocks' input channels c of 3c + c^2 (`adapters.adapter_parameter_count`). Not for `full`."""
  feature_dim = round(bit.BLOCK_FILTERS[-1] * width) * bit.EXPANSION
  head = feature_dim * num_classes + num_classes
  if check(finetune) == "patch":
    return head + 2 * sum(group_norm_channels(units, width))
  if finetune == "adapter":
    block_inputs = [round(bit.ROOT_FILTERS * width)] + [
        round(f * width) * bit.EXPANSION for f in bit.BLOCK_FILTERS[:-1]]
    return head + adapters.adapter_parameter_count(block_inputs)
  if finetune == "head":
    return head
  raise ValueError("closed_form counts the parameter-efficient modes (patch, adapter, head), "
                   f"not {finetune!r}.")
