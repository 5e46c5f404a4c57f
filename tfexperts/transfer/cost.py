"""What selection and fine-tuning cost, counted in images and priced by measured throughputs.

kNN selection embeds the task's training images once per expert (a forward pass each) and then
runs the leave-one-out search; fine-tuning every expert runs the VTAB protocol per expert: every
sweep point (train800 -> val200) and the final retrains (train800val200 -> test), each a number of
training steps times the batch size, plus the evaluation passes.
"""
import dataclasses


@dataclasses.dataclass
class Images:
  """Image counts: `train` (images through a training step) and `forward` (inference only)."""
  train: int = 0
  forward: int = 0

  def seconds(self, train_per_second, forward_per_second):
    """Time at the given throughputs (images per second)."""
    return self.train / train_per_second + self.forward / forward_per_second


def protocol_images(config, best_steps=None, val_size=200, test_size=1000):
  """Images one expert's `protocol.ProtocolConfig` run processes.

  `best_steps` is the sweep's winning step count (unknown before the sweep: None takes the
  longest, the dearer case). Returns `Images`.
  """
  best_steps = max(config.steps) if best_steps is None else best_steps
  if best_steps not in config.steps:
    raise ValueError(f"`best_steps` must be one of the sweep's {config.steps}. Received: "
                     f"{best_steps!r}")
  sweep_runs = len(config.learning_rates) * len(config.steps) * config.sweep_repeats
  sweep_train = (len(config.learning_rates) * config.sweep_repeats * sum(config.steps)
                 * config.batch_size)
  final_train = config.final_repeats * best_steps * config.batch_size
  return Images(train=sweep_train + final_train,
                forward=sweep_runs * val_size + config.final_repeats * test_size)


def knn_images(num_experts, task_size):
  """Images kNN selection embeds: every training image once per expert."""
  return Images(forward=num_experts * task_size)


def finetune_all_images(num_experts, config, **kwargs):
  """Images of fine-tuning every expert with the protocol (kwargs: see `protocol_images`)."""
  one = protocol_images(config, **kwargs)
  return Images(train=num_experts * one.train, forward=num_experts * one.forward)
