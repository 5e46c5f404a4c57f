"""Export copies of expert models: every variable trainable, the upstream head kept or dropped.

A SavedModel records each variable's trainability from its TensorFlow variable, which takes it once,
at creation: a Keras 3 model built while frozen (an extracted adapter expert's backbone, a loaded
adapter bank) stays frozen in the SavedModel however `trainable` is set later. A hub module is
fine-tuned whole downstream, so it is written from a copy whose variables are all created
trainable, unless the model already is. Dropping the head keeps expert modules small (an in21k head
is 21k x 2048 x width parameters) and leaves features only, as the hub module contract says.
"""
from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.models import checkpoints


def _resnet_copy(model, keep_head):
  """Trainable `ResNetV2` with `model`'s config and weights, without its head unless `keep_head`."""
  overrides = {"trainable": True}
  if not keep_head:
    overrides["num_classes"] = 0
  copy = bit.ResNetV2.from_config({**model.get_config(), **overrides})
  copy.build((None, None, None, 3))
  source = checkpoints.checkpoint_variables(model)
  for name, variable in checkpoints.checkpoint_variables(copy).items():
    variable.assign(source[name].numpy())
  return copy


def _adapter_copy(model, keep_head):
  backbone = _resnet_copy(model.backbone, keep_head)
  copy = adapters.AdapterExpertModel(backbone, model.num_experts, freeze_backbone=False,
                                     name=model.name)
  copy.build((None, None, None, 3))
  for source, target in zip(model.adapters, copy.adapters):
    for sv, tv in zip(source.weights, target.weights):
      tv.assign(sv.numpy())
  return copy


def export_copy(model, keep_head=False):
  """Returns a new built, fully trainable copy of `model` for export; `model` is left unchanged.

  Takes a built `ResNetV2` (plain or patch bank) or `AdapterExpertModel` (any number of experts).
  With `keep_head=False` the copy has no head (its outputs hold `pre_logits` only); with
  `keep_head=True` it keeps `model`'s head, if any. Raises ValueError for other model types.
  """
  if isinstance(model, adapters.AdapterExpertModel):
    return _adapter_copy(model, keep_head)
  if isinstance(model, bit.ResNetV2):
    return _resnet_copy(model, keep_head)
  raise ValueError("`model` must be a tfexperts ResNetV2 or AdapterExpertModel. "
                   f"Received: {type(model).__name__}")


def created_trainable(variable):
  """True when `variable`'s backend (TensorFlow) variable was created trainable."""
  return bool(getattr(getattr(variable, "value", None), "trainable", False))


def needs_copy(model, keep_head=False):
  """True when `model` must be copied for export: a head to drop, or a variable created frozen."""
  if head_size(model) and not keep_head:
    return True
  return not all(created_trainable(v) for v in model.variables)


def export_ready(model, keep_head=False):
  """`model` itself when it can be exported as it is, else `export_copy(model, keep_head)`."""
  return export_copy(model, keep_head) if needs_copy(model, keep_head) else model


def head_size(model):
  """Number of classes of `model`'s upstream head (0 without a head). Takes a built model."""
  backbone = model.backbone if isinstance(model, adapters.AdapterExpertModel) else model
  return backbone.num_classes
