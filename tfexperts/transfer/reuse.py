"""Reusing a per-task artifact (`transfer.artifact`): apply it to its expert, or export both as
one hub module.

`apply(expert_handle, artifact_dir)` rebuilds the fine-tuning model of the artifact's mode on the
expert (`finetune.TransferModel`) and loads the trained variables into it: a Keras model
`images -> logits` that predicts what the fine-tuned model predicted. `export(expert_handle,
artifact_dir, output_dir)` writes that model as a task hub module through the experts' export
path (`hub.export.export_expert`: written to a temp directory, reloaded, compared, renamed), with
`__call__` returning the logits, so `hub.KerasLayer(output_dir, trainable=True)` predicts and
fine-tunes (every variable of a task module is trainable). Its metadata is the expert's, with
kind `task` and a `task` block naming the task, mode, artifact and expert. Both raise UserError
naming the two modules when the artifact was trained on another module.
"""
import dataclasses

import keras
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import errors
from tfexperts.hub import export as hub_export
from tfexperts.hub import load as hub_load
from tfexperts.hub import metadata as hub_metadata
from tfexperts.hub import module as hub_module
from tfexperts.transfer import artifact as artifact_lib
from tfexperts.transfer import finetune
from tfexperts.transfer import modes


def _model(expert, artifact_dir, precision=None):
  record, values = artifact_lib.read(artifact_dir)
  artifact_lib.check_expert(record, expert, artifact_dir)
  model = finetune.TransferModel(expert, record["num_classes"],
                                 precision=precision or record["precision"],
                                 finetune=record["finetune"])
  model.build((None, None, None, 3))
  trained = modes.trained_variables(model)
  want = [(v["name"], tuple(v["shape"])) for v in record["variables"]]
  got = [(v.path, tuple(v.shape)) for v in trained]
  if got != want:
    raise errors.UserError(f"Artifact {artifact_dir} holds variables {want[:3]}... "
                           f"({len(want)}); its mode's model on {expert.handle} trains "
                           f"{got[:3]}... ({len(got)}).")
  for variable, value in zip(trained, values):
    variable.assign(value)
  return model, record


def apply(expert_handle, artifact_dir):
  """The expert `expert_handle` with the artifact at `artifact_dir` applied: a built Keras model
  `images [b, h, w, 3] in [0, 1] -> [b, classes]` float32 logits (at the artifact's precision;
  the mode's variables stay trainable). Raises UserError when the artifact was trained on another
  module (naming both paths and identities) or is not an artifact. The edge: `expert_handle` (a
  str, or an `ExpertRef`) is resolved here, once."""
  return _model(hub_load.reference(expert_handle), artifact_dir)[0]


class _TaskOutputs(keras.Model):
  """A transfer model as the export path calls it: `call(images) -> {"pre_logits", "logits"}`."""

  def __init__(self, transfer_model):
    super().__init__(name="task")
    self.transfer = transfer_model
    self.num_classes = transfer_model.num_classes  # the head `hub.copies.head_size` reads
    self.built = True

  def call(self, images, training=False):
    return self.transfer.outputs(images, training)


def task_metadata(expert_ref, artifact_dir, record):
  """The `ModuleMetadata` of the task module of `record` (an artifact's): the metadata of
  `expert_ref` (an `ExpertRef`), with kind `task`, the task's logits and a `TaskInfo`."""
  expert = expert_ref.metadata
  return dataclasses.replace(
      expert, kind=artifacts.TASK_KIND, name=f"{record['task']}_{record['finetune']}",
      module=None, outputs=hub_metadata.Outputs(expert.feature_dim, record["num_classes"]),
      logit_names=None, multi_label=False,
      input=dataclasses.replace(expert.input, resolution=record["resolution"]),
      task=hub_metadata.TaskInfo(
          task=record["task"], finetune=record["finetune"], num_classes=record["num_classes"],
          artifact=artifact_dir, trained_parameters=record["trained_parameters"],
          expert=record["expert"]))


def export(expert_handle, artifact_dir, output_dir, overwrite=False):
  """Writes expert `expert_handle` + the artifact at `artifact_dir` as one hub module at
  `output_dir` (see the module docstring); returns `output_dir`.

  Needs one of tfexperts' own expert modules (the module is written from its rebuilt Keras model,
  at float32). Raises UserError for another module than the artifact's, a module that cannot be
  rebuilt, or an existing `output_dir` without `overwrite`. The edge: `expert_handle` (a str, or
  an `ExpertRef`) is resolved here, once.
  """
  expert = hub_load.reference(expert_handle)
  model, record = _model(expert, artifact_dir, precision="float32")
  if isinstance(model.expert, keras.layers.TFSMLayer):
    raise errors.UserError(f"Exporting a task module rebuilds its expert as a Keras model, which "
                           f"only tfexperts' own expert modules allow; {expert.handle} cannot be "
                           "rebuilt. Use `tfexperts.transfer.apply` to predict with it instead.")
  if tf.io.gfile.exists(output_dir) and not overwrite:
    raise errors.UserError(f"{output_dir} already exists; pass overwrite=True (--overwrite) to "
                           "replace it.")
  return hub_export.export_expert(_TaskOutputs(model), output_dir,
                                  task_metadata(expert, artifact_dir, record),
                                  with_logits=True, overwrite=overwrite,
                                  call_output=hub_module.LOGITS)
