"""What a multi-task patch run (`transfer.multitask`, `vtab_eval --multitask`) accepts, and where
its result lands: import-light (no TensorFlow), so `EvalConfig` checks it before anything loads.

Errors name the `EvalConfig` field (the vtab_eval flag of the same name), the value and what is
valid, as `tfexperts.bounds` does.
"""
import os
import re

from tfexperts import errors

MODE = "patch"  # the one fine-tuning mode with a bank routed per example by task id


def check(task_names, finetune, mixup_alpha=0.0):
  """Returns `task_names` (a list) when they can train together as patches; else raises
  UserError naming the field and value: `finetune` must be patch, `tasks` two or more distinct
  tasks, and `mixup_alpha` 0 (mixup would blend images of tasks whose heads differ)."""
  if finetune != MODE:
    raise errors.UserError(f"`finetune` must be {MODE!r} with `multitask` (one GroupNorm patch "
                           f"and head per task on one frozen expert). Received: "
                           f"finetune={finetune!r}")
  names = list(task_names)
  if len(names) < 2:
    raise errors.UserError(f"`tasks` must name two or more tasks with `multitask` (they train "
                           f"together). Received: tasks={names!r}")
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise errors.UserError(f"`tasks` must name each task once with `multitask`. Received: "
                           f"tasks={names!r} ({', '.join(repeated)} repeated)")
  if mixup_alpha:
    raise errors.UserError(f"`mixup_alpha` must be 0 with `multitask` (mixup would blend images "
                           f"of tasks with different heads). Received: mixup_alpha={mixup_alpha!r}")
  return names


def check_expert(selection, expert_names):
  """The expert a multi-task run trains every task on, when the pool's names are known
  (`expert_names`, a list; None: known only once the pool loads): `selection` when it names one,
  else the pool's only expert. Returns `(name, None)` (its handle is the pool's to give); raises
  UserError naming `selection` and the experts otherwise."""
  if expert_names is None or selection in expert_names:
    return selection, None
  if len(expert_names) == 1:
    return expert_names[0], None
  raise errors.UserError(f"`selection` must name the one expert `multitask` trains every task "
                         f"on: one of {list(expert_names)}. Received: selection={selection!r}"
                         f"{errors.did_you_mean(selection, expert_names)}")


def label(task_names):
  """The tasks' names joined with "+", characters outside [A-Za-z0-9_.+-] replaced by "_"
  (task strings hold "/", ":" and "?"): names the run directory and the result file."""
  return re.sub(r"[^A-Za-z0-9_.+-]", "_", "+".join(task_names))


def result_path(results_dir, task_names):
  """Where the result of a multi-task patch run lives: `<results_dir>/multitask_<tasks>_patch.json`."""
  return os.path.join(results_dir, f"multitask_{label(task_names)}_{MODE}.json")
