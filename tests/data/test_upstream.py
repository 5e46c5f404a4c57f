"""Expert domains and per-expert pipelines, checked against brute force on real tfds datasets."""
import json

import numpy as np
import pytest

from tfexperts.data import hierarchy
from tfexperts.data import offline
from tfexperts.data import upstream
from tfexperts.data.builders import taxonomy
from tests.data.multilabel_dataset import ML_CLASSES, ML_NUM_EXAMPLES, PARENTS, ml_example

LABEL_KEYS = {"single": "label", "sequence": "labels", "multi_hot": "labels_multi_hot"}


def _brute_ancestors(node):
  """Ancestors (inclusive) by walking PARENTS directly, independent of the library."""
  found, todo = set(), [node]
  while todo:
    n = todo.pop()
    if n not in found:
      found.add(n)
      todo += PARENTS[n]
  return found


def _brute_labels(kind, index):
  single, labels = ml_example(index)
  return [single] if kind == "single" else labels


def _brute_domains(kind, index):
  return set().union(*[_brute_ancestors(ML_CLASSES[c]) for c in _brute_labels(kind, index)])


def _brute_counts(kind):
  counts = {n: 0 for n in PARENTS}
  for i in range(ML_NUM_EXAMPLES):
    for node in _brute_domains(kind, i):
      counts[node] += 1
  return counts


@pytest.fixture(scope="module")
def ml_hierarchy(tmp_path_factory):
  path = tmp_path_factory.mktemp("hierarchy") / "animals.tsv"
  path.write_text("".join(f"{c}\t{p}\n" for c, ps in PARENTS.items() for p in ps))
  return str(path)


def _upstream(kind, data_dir, hierarchy_path):
  class_names = ML_CLASSES if kind == "multi_hot" else None
  return upstream.Upstream("tfexperts_test_multilabel", hierarchy_path, data_dir=data_dir,
                           image_key="picture", label_key=LABEL_KEYS[kind],
                           class_names=class_names)


def _index_of(image):
  """Recovers the example index encoded in the first pixel (see conftest.ml_image)."""
  pixel = np.round(np.asarray(image)[0, 0] * 255).astype(int)
  return int(pixel[0] + 256 * pixel[1])


@pytest.mark.parametrize("kind", ["single", "sequence", "multi_hot"])
def test_domain_counts_equal_brute_force(kind, multilabel_data_dir, ml_hierarchy):
  up = _upstream(kind, multilabel_data_dir, ml_hierarchy)
  assert up.spec.kind == kind and up.class_names == ML_CLASSES
  expected = _brute_counts(kind)
  counts = up.count_nodes(batch_size=7)  # several batches, the last one partial
  assert counts == expected
  if kind != "single":  # multi-label: an image is in several sibling domains at once
    assert sum(counts[n] for n in ("animal", "vehicle", "flyer", "pet")) > counts["thing"]


@pytest.mark.parametrize("kind", ["single", "sequence", "multi_hot"])
def test_choose_domains_ranks_counts_and_excludes_roots(kind, multilabel_data_dir, ml_hierarchy):
  up = _upstream(kind, multilabel_data_dir, ml_hierarchy)
  expected = _brute_counts(kind)
  ranked = sorted((-c, n) for n, c in expected.items() if n != "thing" and c >= 5)
  domains = up.choose_domains(top_k=4, min_count=5)
  assert [(d.expert_id, d.name, d.count) for d in domains] == [
      (i, n, -c) for i, (c, n) in enumerate(ranked[:4])]
  with_root = up.choose_domains(top_k=1, exclude_roots=False)
  assert with_root == [upstream.Domain(0, "thing", expected["thing"])]
  everything = up.choose_domains(min_count=0, exclude_roots=False)
  assert sorted(d.name for d in everything) == sorted(PARENTS)


@pytest.mark.parametrize("kind", ["single", "sequence", "multi_hot"])
def test_expert_pipeline_yields_exactly_its_examples(kind, multilabel_data_dir, ml_hierarchy):
  up = _upstream(kind, multilabel_data_dir, ml_hierarchy)
  domains = up.choose_domains(min_count=1)
  order = [_index_of(ex["image"]) for ex in up.baseline_dataset().as_numpy_iterator()]
  assert sorted(order) == list(range(ML_NUM_EXAMPLES))
  for domain in domains:
    examples = list(up.expert_dataset(domains, domain.expert_id).as_numpy_iterator())
    got = [_index_of(ex["image"]) for ex in examples]
    want = [i for i in order if domain.name in _brute_domains(kind, i)]
    assert got == want and len(got) == domain.count
    for i, ex in zip(got, examples):
      assert ex["expert_id"] == domain.expert_id and ex["expert_id"].dtype == np.int32
      hot = np.zeros(len(ML_CLASSES), np.float32)
      hot[_brute_labels(kind, i)] = 1
      np.testing.assert_array_equal(ex["labels"], hot)
      assert ("label" in ex) == (kind == "single")


def test_membership_table_matches_hierarchy(multilabel_data_dir, ml_hierarchy):
  up = _upstream("sequence", multilabel_data_dir, ml_hierarchy)
  domains = [upstream.Domain(0, "flyer", 0), upstream.Domain(1, "pet", 0)]
  table = up.membership(domains)
  assert table.shape == (len(ML_CLASSES), 2) and table.dtype == bool
  assert [c for c, row in zip(ML_CLASSES, table) if row[0]] == ["bat", "sparrow", "plane"]
  assert [c for c, row in zip(ML_CLASSES, table) if row[1]] == ["dog", "cat"]


def test_unknown_class_and_bad_keys_are_rejected(multilabel_data_dir, tmp_path):
  partial = tmp_path / "partial.tsv"
  partial.write_text("dog\tmammal\ncat\tmammal\nmammal\tthing\n")
  with pytest.raises(ValueError, match=r"6 of 8 dataset classes are not in the hierarchy.*'bat'"):
    upstream.Upstream("tfexperts_test_multilabel", str(partial), data_dir=multilabel_data_dir,
                      image_key="picture")
  h = hierarchy.Hierarchy([(c, p) for c, ps in PARENTS.items() for p in ps])
  with pytest.raises(ValueError, match=r"Image key 'image'.*Available keys: \['label', 'labels', "
                                       r"'labels_multi_hot', 'picture'\]"):
    upstream.Upstream("tfexperts_test_multilabel", h, data_dir=multilabel_data_dir)
  with pytest.raises(ValueError, match="multi-hot tensor.*pass `class_names`"):
    upstream.Upstream("tfexperts_test_multilabel", h, data_dir=multilabel_data_dir,
                      image_key="picture", label_key="labels_multi_hot")
  with pytest.raises(ValueError, match="not prepared in"):
    upstream.Upstream("tfexperts_test_multilabel", h, data_dir=str(tmp_path / "empty"))


def test_shapes_domains_are_the_five_branches_and_are_saved(offline_data_dir, tmp_path, capsys):
  up = upstream.Upstream("tfexperts_shapes/tiny", offline.upstream_hierarchy_path(),
                         data_dir=offline_data_dir)
  path = str(tmp_path / "run" / "domains.json")
  domains = upstream.select_expert_domains(up, top_k=5, min_count=10, output_path=path)
  assert [(d.name, d.count) for d in domains] == [(b, 100) for b in sorted(taxonomy.BRANCHES)]
  printed = capsys.readouterr().out
  assert "tfexperts_shapes/tiny [train] (500 images" in printed
  assert "     0  glyph          100   20.0%" in printed
  loaded, metadata = upstream.load_domains(path)
  assert loaded == domains
  assert metadata == {"dataset": "tfexperts_shapes/tiny", "split": "train", "num_images": 500,
                      "top_k": 5, "min_count": 10, "exclude_roots": True, "roots": ["shape"]}
  assert json.loads(open(path).read())["domains"][0] == {"expert_id": 0, "name": "glyph",
                                                         "count": 100}
  assert [p.name for p in (tmp_path / "run").iterdir()] == ["domains.json"]


def test_shapes_expert_slice_holds_only_its_branch(offline_data_dir):
  up = upstream.Upstream("tfexperts_shapes/tiny", offline.upstream_hierarchy_path(),
                         data_dir=offline_data_dir)
  domains = up.choose_domains(top_k=5)
  glyph = [d for d in domains if d.name == "glyph"][0]
  make = lambda seed: up.expert_dataset(domains, glyph.expert_id, batch_size=32, seed=seed,
                                       preprocess="resize(16)|value_range(0, 1)",
                                       shuffle_buffer=64)
  batches = list(make(1).as_numpy_iterator())
  labels = np.concatenate([b["label"] for b in batches])
  names = sorted(set(taxonomy.UPSTREAM_CLASSES[i] for i in labels))
  assert len(labels) == 100 and names == sorted(taxonomy.BRANCHES["glyph"])
  assert batches[0]["image"].shape == (32, 16, 16, 3) and batches[0]["image"].dtype == np.float32
  same_seed = np.concatenate([b["label"] for b in make(1).as_numpy_iterator()])
  other_seed = np.concatenate([b["label"] for b in make(2).as_numpy_iterator()])
  np.testing.assert_array_equal(labels, same_seed)
  assert not np.array_equal(labels, other_seed)


def test_mixture_of_experts_draws_every_expert(offline_data_dir):
  up = upstream.Upstream("tfexperts_shapes/tiny", offline.upstream_hierarchy_path(),
                         data_dir=offline_data_dir)
  domains = up.choose_domains(top_k=5)
  batch = next(up.experts_dataset(domains, batch_size=500, seed=0).as_numpy_iterator())
  counts = np.bincount(batch["expert_id"], minlength=5)
  assert counts.sum() == 500 and counts.min() > 60
  for expert_id, label in zip(batch["expert_id"], batch["label"]):
    leaf = taxonomy.UPSTREAM_CLASSES[label]
    assert taxonomy.branch_of(leaf) == domains[expert_id].name


def test_choose_domains_argument_checks():
  with pytest.raises(ValueError, match="`top_k` must be a positive integer or None. Received: "
                                       "top_k=0"):
    upstream.choose_domains(["a"], [1], top_k=0)
  with pytest.raises(ValueError, match="`min_count` must be a non-negative integer. Received: "
                                       "min_count=-1"):
    upstream.choose_domains(["a"], [1], min_count=-1)
  assert upstream.choose_domains(["b", "a", "c"], [5, 5, 9], top_k=2) == [
      upstream.Domain(0, "c", 9), upstream.Domain(1, "a", 5)]


def test_subset_pipeline_yields_exactly_the_masked_examples(multilabel_data_dir, ml_hierarchy):
  up = _upstream("sequence", multilabel_data_dir, ml_hierarchy)
  order = [_index_of(ex["image"]) for ex in up.baseline_dataset().as_numpy_iterator()]
  mask = np.random.default_rng(5).random(ML_NUM_EXAMPLES) < 0.3
  examples = list(up.subset_dataset(mask, expert_id=3).as_numpy_iterator())
  assert [_index_of(ex["image"]) for ex in examples] == [order[p] for p in np.flatnonzero(mask)]
  assert all(ex["expert_id"] == 3 for ex in examples)
  with pytest.raises(ValueError, match=r"shape=\(3,\)"):
    up.subset_dataset(np.ones(3, bool))
