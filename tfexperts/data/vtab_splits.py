"""The VTAB-1k split convention for any dataset: train800, val200, train800val200 and test.

`train800` is the first 800 examples of the training split, `val200` the next 200,
`train800val200` both, and `test` the dataset's `test` split, else its `validation` split, else the
training split after its first 1000 examples. With fewer than 1000 training examples the same
80/20 rule divides what there is (and, without a test or validation split, 20% of the training
split is held out as test first). `vtab1k_splits` returns the ranges and a sentence saying which
rule applied, for the output and the records.
"""
import dataclasses
from typing import Optional

from tfexperts.errors import UserError

SPLIT_NAMES = ("train800", "val200", "train800val200", "test")
TRAIN_VAL = 1000  # VTAB-1k: 800 + 200 training examples


@dataclasses.dataclass(frozen=True)
class SplitRange:
  """Examples `[start:end]` of split `source` (`end` None: to the end)."""
  source: str
  start: int = 0
  end: Optional[int] = None

  def tfds(self):
    """The tfds split string, e.g. "train[800:1000]", or just "test" for a whole split."""
    if self.start == 0 and self.end is None:
      return self.source
    start = self.start or ""
    return f"{self.source}[{start}:{'' if self.end is None else self.end}]"

  def size(self, sizes):
    """Number of examples, given `{split: num_examples}`."""
    end = sizes[self.source] if self.end is None else self.end
    return max(end - self.start, 0)


def held_out_split(split_names):
  """The split used as `test`: "test", else "validation", else None (the train tail is used)."""
  for name in ("test", "validation"):
    if name in split_names:
      return name
  return None


def vtab1k_splits(sizes, what="the dataset"):
  """VTAB-1k splits of a dataset with split sizes `sizes` (`{split: num_examples}`).

  Takes the split sizes (a "train" split is required) and a description of the dataset for
  messages. Returns `(ranges, note)`: `{name: SplitRange}` for the names of `SPLIT_NAMES`, and a
  sentence saying where `test` comes from and whether the small-dataset 80/20 rule applied.
  Raises `UserError` when there is no "train" split or too few examples for non-empty splits.
  """
  if "train" not in sizes:
    raise UserError(f"{what} has no 'train' split, which the VTAB-1k splits start from. "
                    f"Splits: {sorted(sizes)}")
  count = sizes["train"]
  held_out = held_out_split(sizes)
  notes = []
  if held_out is not None:
    test = SplitRange(held_out)
    pool = min(count, TRAIN_VAL)
    notes.append(f"test = the '{held_out}' split ({sizes[held_out]} examples)"
                 + ("" if held_out == "test" else ", as there is no 'test' split"))
  elif count > TRAIN_VAL:
    pool = TRAIN_VAL
    test = SplitRange("train", TRAIN_VAL)
    notes.append(f"test = train[{TRAIN_VAL}:] ({count - TRAIN_VAL} examples), as there is no "
                 "'test' or 'validation' split")
  else:
    pool = count * 4 // 5
    test = SplitRange("train", pool)
    notes.append(f"only {count} training examples and no 'test' or 'validation' split: test = "
                 f"the last 20% (train[{pool}:], {count - pool} examples)")
  if pool < TRAIN_VAL:
    train = pool * 4 // 5
    notes.append(f"only {pool} examples for training (< {TRAIN_VAL}): train800 = the first 80% "
                 f"(train[:{train}]), val200 = the remaining 20% (train[{train}:{pool}])")
  else:
    train = 800
  ranges = {"train800": SplitRange("train", 0, train),
            "val200": SplitRange("train", train, pool),
            "train800val200": SplitRange("train", 0, pool),
            "test": test}
  empty = [name for name, r in ranges.items() if r.size(sizes) == 0]
  if empty:
    raise UserError(f"{what} is too small for VTAB-1k splits: {empty} would be empty (split "
                    f"sizes {dict(sorted(sizes.items()))}).")
  return ranges, "; ".join(notes) + "."
