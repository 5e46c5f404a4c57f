"""Transfer: fine-tuning experts on tasks (the VTAB-1k protocol, modes, per-task artifacts).

`apply` and `export` are `transfer.reuse`'s, imported when called (so importing a submodule of
this package stays as cheap as it was).
"""


def apply(expert_handle, artifact_dir):
  """The expert with a per-task artifact applied: a Keras model images -> logits (see
  `tfexperts.transfer.reuse.apply`)."""
  from tfexperts.transfer import reuse  # pylint: disable=g-import-not-at-top
  return reuse.apply(expert_handle, artifact_dir)


def export(expert_handle, artifact_dir, output_dir, overwrite=False):
  """Writes expert + per-task artifact as one hub module at `output_dir`; returns it (see
  `tfexperts.transfer.reuse.export`)."""
  from tfexperts.transfer import reuse  # pylint: disable=g-import-not-at-top
  return reuse.export(expert_handle, artifact_dir, output_dir, overwrite)
