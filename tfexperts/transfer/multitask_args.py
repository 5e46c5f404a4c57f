"""What a multi-task patch run (`transfer.multitask`, `vtab_eval --multitask`) accepts, and where
its result lands: import-light (no TensorFlow), so the binaries check it before anything loads."""
import os
import re

from tfexperts import errors

MODE = "patch"  # the one fine-tuning mode with a bank routed per example by task id


def check(task_names, finetune, mixup_alpha=0.0):
  """Returns `task_names` (a list) when they can train together as patches; else raises
  UserError naming the value: `finetune` must be patch, there must be two or more distinct
  tasks, and mixup is off (it would mix images of different tasks, whose heads differ)."""
  if finetune != MODE:
    raise errors.UserError(f"--multitask trains one GroupNorm patch and head per task on one "
                           f"frozen expert: it needs --finetune={MODE}. Received: "
                           f"--finetune={finetune}")
  names = list(task_names)
  if len(names) < 2:
    raise errors.UserError(f"--multitask trains several tasks together: name two or more "
                           f"(--task=A,B). Received: --task={','.join(names)}")
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise errors.UserError(f"--multitask: each task may appear once. Received: --task="
                           f"{','.join(names)} ({', '.join(repeated)} repeated)")
  if mixup_alpha:
    raise errors.UserError(f"--multitask: mixup would blend images of different tasks (each has "
                           f"its own head); use --mixup_alpha=0. Received: --mixup_alpha="
                           f"{mixup_alpha}")
  return names


def label(task_names):
  """The tasks' names joined with "+", characters outside [A-Za-z0-9_.+-] replaced by "_"
  (task strings hold "/", ":" and "?"): names the run directory and the result file."""
  return re.sub(r"[^A-Za-z0-9_.+-]", "_", "+".join(task_names))


def result_path(results_dir, task_names):
  """Where the result of a multi-task patch run lives: `<results_dir>/multitask_<tasks>_patch.json`."""
  return os.path.join(results_dir, f"multitask_{label(task_names)}_{MODE}.json")
