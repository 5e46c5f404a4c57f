"""A Keras `ResNetV2` rebuilt from an exported baseline module, to train it further (e.g. DAT).

An exported module saves only variables and traced functions. Its metadata's `architecture` and
`outputs.logits` size a fresh `ResNetV2` (`models.architecture.rebuild`); the module's `variables`
are saved in the Keras model's variable order (`module.ExpertModule`), so they are assigned in
order, each checked against the Keras variable's name and shape.
"""
import tensorflow as tf

from tfexperts.errors import UserError
from tfexperts.models import architecture as architecture_lib


def _check_baseline(expert):
  meta = expert.metadata
  if meta.kind != "baseline" or meta.is_absent or not meta.outputs.logits or (
      meta.architecture.adapters or meta.architecture.patch_experts):
    raise UserError(f"Module {expert.handle!r} (kind {meta.kind!r}) is not a tfexperts "
                    "baseline with an upstream head; DAT starts from the collection's `baseline` "
                    "module exported by bin/export_experts.")


def rebuild(expert):
  """Takes a `hub.load.Expert` of a tfexperts baseline module; returns a built `ResNetV2` with its
  head, holding the module's weights. Raises UserError for another kind of module, ValueError
  when the module's variables do not match the architecture its metadata declares."""
  _check_baseline(expert)
  model = architecture_lib.rebuild(expert.metadata.architecture, expert.metadata.outputs.logits)
  saved = list(expert.module.variables)
  if len(saved) != len(model.variables):
    raise ValueError(f"Module {expert.handle!r} holds {len(saved)} variables; its declared "
                     f"architecture has {len(model.variables)}.")
  for target, source in zip(model.variables, saved):
    source_name = source.name.split(":")[0].rsplit("/", 1)[-1]
    if source_name != target.name or tuple(source.shape) != tuple(target.shape):
      raise ValueError(f"Module {expert.handle!r}: variable {source.name} {tuple(source.shape)} "
                       f"does not match {target.path} {tuple(target.shape)}.")
    target.assign(tf.cast(source, target.dtype))
  return model
