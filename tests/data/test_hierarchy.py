"""Label hierarchy: file formats, ancestors in a DAG, and the errors for bad hierarchies."""
import json

import numpy as np
import pytest

from tfexperts.data import hierarchy
from tfexperts.errors import UserError
from tests.data.multilabel_dataset import PARENTS

EDGES = [(child, parent) for child, parents in PARENTS.items() for parent in parents]


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_json_and_tsv_files_give_the_same_hierarchy(tmp_path):
  json_path = _write(tmp_path / "h.json", json.dumps({"nodes": list(PARENTS), "edges": EDGES}))
  tsv = "# child<TAB>parent\nthing\n\n" + "".join(f"{c}\t{p}\n" for c, p in EDGES)
  tsv_path = _write(tmp_path / "h.tsv", tsv)
  a, b = hierarchy.load_hierarchy(json_path), hierarchy.load_hierarchy(tsv_path)
  assert a.nodes == tuple(PARENTS)
  assert b.nodes == tuple(PARENTS)  # first appearance: "thing", then edge order
  assert a.edges == b.edges == tuple(EDGES)
  assert a.roots == ("thing",)


def test_ancestors_follow_every_parent_and_include_the_node():
  h = hierarchy.Hierarchy(EDGES)
  assert h.ancestors("bat") == {"bat", "mammal", "animal", "flyer", "thing"}
  assert h.ancestors("plane") == {"plane", "vehicle", "flyer", "thing"}
  assert h.ancestors("thing") == {"thing"}
  assert h.parents("dog") == ("mammal", "pet")
  assert set(h.children("flyer")) == {"bat", "sparrow", "plane"}


def test_ancestor_matrix_marks_class_and_ancestors_per_domain():
  h = hierarchy.Hierarchy(EDGES)
  matrix = h.ancestor_matrix(["dog", "plane", "bird"], ["flyer", "pet", "bird", "thing"])
  np.testing.assert_array_equal(matrix, [[False, True, False, True],
                                         [True, False, False, True],
                                         [False, False, True, True]])
  full = hierarchy.Hierarchy(EDGES, nodes=list(PARENTS)).ancestor_matrix(["sparrow"])
  assert [list(PARENTS)[j] for j in np.flatnonzero(full[0])] == ["thing", "animal", "flyer", "bird",
                                                           "sparrow"]


def test_round_trip_through_save(tmp_path):
  h = hierarchy.Hierarchy(EDGES, nodes=list(PARENTS))
  path = h.save(str(tmp_path / "out" / "h.json"))
  again = hierarchy.load_hierarchy(path)
  assert again.nodes == h.nodes and again.edges == h.edges
  assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]


def test_cycle_is_rejected_showing_it():
  with pytest.raises(ValueError, match=r"acyclic.*cycle.*: a -> b -> c -> a"):
    hierarchy.Hierarchy([("root", "x"), ("a", "b"), ("b", "c"), ("c", "a")])
  with pytest.raises(ValueError, match=r"cycle.*: a -> a"):
    hierarchy.Hierarchy([("a", "a")])


def test_cycle_in_a_file_is_rejected(tmp_path):
  path = _write(tmp_path / "cyclic.tsv", "dog\tmammal\nmammal\tanimal\nanimal\tdog\n")
  with pytest.raises(ValueError, match="dog -> mammal -> animal -> dog"):
    hierarchy.load_hierarchy(path)


def test_unknown_class_is_rejected_naming_it():
  h = hierarchy.Hierarchy(EDGES)
  with pytest.raises(ValueError, match=r"1 of 3 dataset classes are not in the hierarchy.*"
                                       r"'unicorn'"):
    h.check_classes(["dog", "unicorn", "cat"])
  with pytest.raises(ValueError, match="'unicorn'"):
    h.ancestor_matrix(["dog", "unicorn"])
  with pytest.raises(ValueError, match="Unknown hierarchy node 'unicorn'"):
    h.ancestors("unicorn")


def test_edge_with_undeclared_node_is_rejected(tmp_path):
  path = _write(tmp_path / "h.json", json.dumps({"nodes": ["thing", "dog"],
                                                 "edges": [["dog", "thing"], ["cat", "thign"]]}))
  with pytest.raises(ValueError, match=r"2 node\(s\) missing from the declared nodes: 'cat', "
                                       "'thign'"):
    hierarchy.load_hierarchy(path)


@pytest.mark.parametrize("text, message", [
    ('["dog", "thing"]', "must be an object with an 'edges' list"),
    ('{"edges": [["dog"]]}', r"must be a \(child, parent\) pair. Received: \['dog'\]"),
    ('{"edges": [["dog", ""]]}', "non-empty strings.*Received: ''"),
    ('{"edges": ', "not valid JSON"),
])
def test_malformed_json_is_rejected(tmp_path, text, message):
  with pytest.raises(ValueError, match=message):
    hierarchy.load_hierarchy(_write(tmp_path / "bad.json", text))


def test_malformed_tsv_and_unknown_extension_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="line 2 must be 'child<TAB>parent'"):
    hierarchy.load_hierarchy(_write(tmp_path / "bad.tsv", "a\tb\na\tb\tc\n"))
  # Spaces instead of tabs: each line would silently become one node named "dog mammal".
  spaced = "# child parent\ndog mammal\nmammal   animal\n"
  with pytest.raises(UserError, match="line 2 is 'dog mammal'.*no line of the file has a tab"):
    hierarchy.load_hierarchy(_write(tmp_path / "spaces.tsv", spaced))
  assert hierarchy.parse_tsv("golden retriever\tdog\ndog\n").parents("golden retriever") == ("dog",)
  with pytest.raises(ValueError, match=r"must end with one of \('.json', '.tsv', '.txt'\)"):
    hierarchy.load_hierarchy(_write(tmp_path / "h.yaml", "a: b"))
