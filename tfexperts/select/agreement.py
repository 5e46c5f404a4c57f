"""Whether another precision or engine changes kNN selection's answer on a pool (issue 26 item 4).

Each expert's features of a task's train800 split are embedded by a reference (TensorFlow at
float32, what selection runs by default) and by each variant (e.g. TensorFlow or OpenVINO at
bfloat16), with `selection.FeatureSource` and `selection.score` as selection embeds and scores
them. Per task and expert it reports both leave-one-out kNN accuracies, what actually ran (a
fallback, e.g. OpenVINO to TensorFlow or a reduced precision to float32, shows there) and the
features' max relative error; per task and variant, the largest accuracy difference and whether
the top pick is the same: the reference's top expert, or either of its top two when they are
within `TIE_POINTS` of each other; and whether that difference is within `TOLERANCE_POINTS`.
"""
import dataclasses
import tempfile

import numpy as np

from tfexperts import defaults
from tfexperts import errors
from tfexperts import precision as precision_lib
from tfexperts.data import tasks as tasks_lib
from tfexperts.hub import native
from tfexperts.hub import openvino_engine
from tfexperts.select import proxies as proxies_lib
from tfexperts.select import selection

TIE_POINTS = 0.5  # the reference's top two this close (accuracy points): either pick agrees
TOLERANCE_POINTS = 0.5  # the largest accuracy difference issue 26 accepts
_SLACK = 1e-9  # accuracies are image counts over a split: a float error must not decide


@dataclasses.dataclass(frozen=True)
class Variant:
  """An engine (`hub.openvino_engine.ENGINES`) and a precision (`tfexperts.precision`)."""
  engine: str
  precision: str

  @property
  def name(self):
    return f"{self.engine}/{self.precision}"


REFERENCE = Variant("tensorflow", "float32")


@dataclasses.dataclass(frozen=True)
class Measured:
  """One expert on one task under one variant.

  Attributes:
    accuracy: leave-one-out kNN accuracy in [0, 1].
    ran: the `Variant` that computed the features (not the one asked for after a fallback).
    max_relative_error: max |features - reference features| / max |reference features| (0 for
      the reference itself).
  """
  accuracy: float
  ran: Variant
  max_relative_error: float


@dataclasses.dataclass(frozen=True)
class ExpertRow:
  """One expert on one task: the reference's `Measured`, then each variant's (in the order of
  `Agreement.variants`)."""
  expert: str
  reference: Measured
  variants: tuple


@dataclasses.dataclass(frozen=True)
class VariantSummary:
  """One variant on one task: the largest |accuracy difference| over the experts in points and
  whether it is within `TOLERANCE_POINTS`, the picks the reference accepts, the variant's pick
  and whether it is one of them."""
  variant: Variant
  max_difference_points: float
  within_tolerance: bool
  accepted_picks: tuple
  pick: str
  same_pick: bool


@dataclasses.dataclass(frozen=True)
class TaskAgreement:
  """One task: its split's image count, a row per expert and a summary per variant."""
  task: str
  num_images: int
  rows: tuple
  summaries: tuple


@dataclasses.dataclass(frozen=True)
class Agreement:
  """The whole measurement: the reference, the variants and a `TaskAgreement` per task."""
  reference: Variant
  variants: tuple
  tasks: tuple

  @property
  def agrees(self):
    """Every variant within `TOLERANCE_POINTS` with the same pick on every task."""
    return all(s.same_pick and s.within_tolerance for t in self.tasks for s in t.summaries)


def parse_variant(text):
  """`Variant` from "engine:precision" (e.g. "openvino:bfloat16"); UserError naming the value and
  the valid engines and precisions otherwise (OpenVINO not installed included)."""
  engine, sep, precision = str(text).partition(":")
  if not sep:
    raise errors.UserError(f"variant: {text!r} is not engine:precision (engines "
                           f"{list(openvino_engine.ENGINES)}, precisions "
                           f"{list(precision_lib.PRECISIONS)}).")
  return _checked(Variant(engine, precision))


def _checked(variant):
  openvino_engine.check_engine(variant.engine)
  precision_lib.check(variant.precision)
  return variant


def max_difference_points(reference_scores, variant_scores):
  """The largest |variant - reference| accuracy over the experts of `reference_scores` (both
  `{expert: accuracy in [0, 1]}`), in points (0 for no experts)."""
  return max((abs(variant_scores[e] - a) * 100 for e, a in reference_scores.items()), default=0.0)


def accepted_picks(reference_scores):
  """The picks that agree with `reference_scores` (`{expert: accuracy}`): its top expert, plus
  its second when the two are within `TIE_POINTS` points. A tuple, best first."""
  ranked = proxies_lib.rank(reference_scores)
  picks = tuple(name for name, _ in ranked[:1])
  if len(ranked) > 1 and (ranked[0][1] - ranked[1][1]) * 100 <= TIE_POINTS + _SLACK:
    picks += (ranked[1][0],)
  return picks


def summarize(variant, reference_scores, variant_scores):
  """`VariantSummary` of `variant_scores` against `reference_scores` (`{expert: accuracy}`)."""
  accepted, pick = accepted_picks(reference_scores), selection.best(variant_scores)
  difference = max_difference_points(reference_scores, variant_scores)
  return VariantSummary(variant, difference, difference <= TOLERANCE_POINTS + _SLACK, accepted,
                        pick, pick in accepted)


def _embed(candidates, task, data_dir, resolution, variant, cache_dir, runner, batch_size):
  """`({expert: accuracy}, {expert: features}, {expert: Variant that ran})` of one variant."""
  source = selection.FeatureSource(task, "train800", data_dir, resolution=resolution,
                                   batch_size=batch_size, cache_dir=cache_dir,
                                   engine=variant.engine, precision=variant.precision)
  source.native = runner  # shared: each architecture is traced once per precision
  scores, _ = selection.score(candidates, source, ["knn"])
  names = [selection.expert_key(e) for e in candidates.experts]
  features = {n: source.features(e).features for n, e in zip(names, candidates.experts)}
  ran = {n: Variant(source.ran(e).engine, source.ran(e).precision)
         for n, e in zip(names, candidates.experts)}
  return scores["knn"], features, ran


def _relative_error(features, reference):
  return float(np.abs(features - reference).max() / max(float(np.abs(reference).max()), 1e-12))


def _task_agreement(candidates, task, data_dir, resolution, reference, variants, cache_dir,
                    runner, batch_size):
  embed = lambda variant: _embed(candidates, task, data_dir, resolution, variant, cache_dir,
                                 runner, batch_size)
  ref_scores, ref_features, ref_ran = embed(reference)
  measured = {}
  for variant in variants:
    scores, features, ran = embed(variant)
    measured[variant] = {name: Measured(scores[name], ran[name],
                                        _relative_error(features[name], ref_features[name]))
                         for name in ref_scores}
  rows = tuple(ExpertRow(name, Measured(accuracy, ref_ran[name], 0.0),
                         tuple(measured[v][name] for v in variants))
               for name, accuracy in ref_scores.items())
  summaries = tuple(summarize(v, ref_scores, {n: m.accuracy for n, m in measured[v].items()})
                    for v in variants)
  num_images = len(next(iter(ref_features.values())))
  return TaskAgreement(task.name, num_images, rows, summaries)


def measure(candidates, tasks, data_dir, resolution=None, reference=REFERENCE,
            variants=(Variant("tensorflow", "bfloat16"),), cache_dir=None,
            batch_size=defaults.EMBED_BATCH_SIZE):
  """Measures how far each variant's kNN selection is from the reference's on every task.

  Args:
    candidates: `selection.Candidates` (`selection.load_candidates`); its experts are compared.
    tasks: task names (`data.tasks.get_task`, read from `data_dir`).
    data_dir: the tfds data dir of the tasks.
    resolution: image size for every expert; None: each expert's metadata resolution.
    reference: the `Variant` the others are compared with.
    variants: `Variant`s; each is checked first (OpenVINO not installed is a UserError).
    cache_dir: feature cache (OpenVINO's converted models too); None: a temporary directory.
    batch_size: images per embedding batch.

  Returns:
    `Agreement`.
  """
  variants = tuple(_checked(v) for v in variants)
  _checked(reference)
  task_objects = [tasks_lib.get_task(name, data_dir) for name in tasks]
  runner = native.NativeRunner()
  with tempfile.TemporaryDirectory(prefix="agreement_") as temporary:
    # Features are read back from the cache for the error, so there always is one.
    cache = cache_dir or temporary
    return Agreement(reference, variants, tuple(
        _task_agreement(candidates, task, data_dir, resolution, reference, variants, cache,
                        runner, batch_size) for task in task_objects))


def _points(value):
  return f"{value:.3f}"


def _accuracy_cell(measured, asked):
  text = _points(100 * measured.accuracy)
  return text if measured.ran == asked else f"{text} (ran {measured.ran.name})"


def markdown(agreement):
  """The agreement as markdown: a row per task and expert (the reference's kNN accuracy, each
  variant's with its difference in points and its features' max relative error; what ran when
  it differs from what was asked), then a row per task and variant (max difference in points and
  images, within `TOLERANCE_POINTS`, the picks, same pick). Differences have 3 decimals, exact for
  splits of 800 or 1000 images."""
  ref = agreement.reference
  header = ["task", "expert", f"{ref.name} kNN %"]
  for v in agreement.variants:
    header += [f"{v.name} kNN %", "diff", "max rel err"]
  lines = [_row(header), _row(["---"] * len(header))]
  for task in agreement.tasks:
    for row in task.rows:
      cells = [task.task, row.expert, _accuracy_cell(row.reference, ref)]
      for v, m in zip(agreement.variants, row.variants):
        cells += [_accuracy_cell(m, v), f"{100 * (m.accuracy - row.reference.accuracy):+.3f}",
                  f"{m.max_relative_error:.2e}"]
      lines.append(_row(cells))
  header = ["task", "variant", "max diff (points)", "images", f"within {TOLERANCE_POINTS}",
            f"{ref.name} pick", "variant pick", "same pick"]
  lines += ["", _row(header), _row(["---"] * len(header))]
  for task in agreement.tasks:
    for s in task.summaries:
      lines.append(_row([task.task, s.variant.name, _points(s.max_difference_points),
                         f"{s.max_difference_points * task.num_images / 100:.0f} of "
                         f"{task.num_images}", _yes(s.within_tolerance),
                         " or ".join(s.accepted_picks), s.pick, _yes(s.same_pick)]))
  return "\n".join(lines) + "\n"


def _yes(flag):
  return "yes" if flag else "NO"


def _row(cells):
  return "| " + " | ".join(cells) + " |"
