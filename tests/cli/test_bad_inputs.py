"""The catalogue of bad inputs: each one fails with a clear message and no traceback.

Binary cases run the real `bin/*` scripts in subprocesses with this suite's `sys.executable`; each
asserts a non-zero exit (2, the user-error status), no "Traceback" in the output, and that the
message names the offending value. Most fail before TensorFlow is imported, so they take well under
a second (a test below checks that TensorFlow stays unloaded); the few that need TensorFlow (a TPU
that does not answer, an unknown tfds dataset, unprepared data, exports) take a few seconds.
Public-API cases call the library in-process and assert a `UserError` whose message names the
value.
"""
import json
import os
import shutil

import numpy as np
import pytest

from tests import processes
from tfexperts import errors
from tfexperts.cli import run as run_lib



class Files:
  """Bad (and a few good) inputs written once per module under one temp directory."""

  def __init__(self, root, exported, offline_data_dir):
    self.root, self.exported, self.data = root, exported, offline_data_dir
    self.collection = exported.collection_dir
    for name in ("empty", "empty_workdir", "results_empty", "unprepared", "corrupt_records"):
      os.makedirs(self.path(name))
    self._write("hierarchy_ok.json", json.dumps({"edges": [["a", "b"]]}))
    self._write("cyclic.json", json.dumps({"edges": [["a", "b"], ["b", "c"], ["c", "a"]]}))
    self._write("malformed.tsv", "a\tb\tc\n")
    self._write("unknown_class.json", json.dumps({"edges": [["only_in_file", "root"]]}))
    self._write("corrupt_records/shapes_fine__knn.json", '{"task": "shapes_fine", "sel')
    os.makedirs(self.path("malformed_index"))
    self._write("malformed_index/index.json", '{"modules": [')
    shutil.copytree(self.collection, self.path("dangling"))
    shutil.rmtree(self.path("dangling", "patch_animal"))

  def path(self, *parts):
    return os.path.join(self.root, *parts)

  def _write(self, name, text):
    with open(self.path(name), "w") as f:
      f.write(text)


# (id, binary, args (a function of Files), what the message must name)
BINARY_CASES = [
    ("unknown_task", "select_expert",
     lambda f: ["--task=no_such_task", f"--experts={f.collection}"], "no_such_task"),
    ("unknown_split", "select_expert",
     lambda f: ["--task=digits", "--split=train999", f"--experts={f.collection}"], "train999"),
    ("unknown_proxy", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--proxy=knn,knnn"], "knnn"),
    ("unknown_report_proxy", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--report_proxies=logmee"],
     "logmee"),
    ("unknown_selection", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--selection=knnn"], "knnn"),
    ("unknown_expert_name", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--selection=adapter_plant"],
     "adapter_plant"),
    ("multitask_not_patch", "vtab_eval",
     lambda f: ["--task=digits,shapes_fine", f"--experts={f.collection}", "--multitask"],
     "finetune='full'"),
    ("multitask_one_task", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--multitask", "--finetune=patch"],
     "tasks=['digits']"),
    ("unknown_task_in_list", "vtab_eval",
     lambda f: ["--task=digits,cifar1000", f"--experts={f.collection}"], "cifar1000"),
    ("unknown_preset", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--model=r51x1"], "r51x1"),
    ("unknown_stage", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--stage=baseline,experts"], "experts"),
    ("unknown_strategy", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--strategy=tpu_pod"], "tpu_pod"),
    ("unknown_flag", "select_expert", lambda f: ["--taks=digits"], "taks"),
    ("missing_experts", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.path('no_such_collection')}"],
     "no_such_collection"),
    ("experts_not_a_savedmodel", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.path('empty')}"], "empty"),
    ("malformed_index", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.path('malformed_index')}"], "index.json"),
    ("dangling_index", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.path('dangling')}"], "patch_animal"),
    ("unknown_engine", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--engine=onnx"], "'onnx'"),
    ("unknown_engine_vtab", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--engine=openvin0"], "openvin0"),
    ("zero_batch_size", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--batch_size=0"], "batch_size=0"),
    ("negative_batch_size", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--batch_size=-8"], "batch_size=-8"),
    ("zero_steps", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--steps=100,0"], "'0'"),
    ("negative_steps", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--expert_steps=-5"], "expert_steps=-5"),
    ("zero_resolution", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--resolution=0"], "resolution=0"),
    ("negative_resolution", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--resolution=-32"],
     "resolution=-32"),
    ("zero_learning_rate", "vtab_eval",
     lambda f: ["--task=digits", f"--experts={f.collection}", "--learning_rates=0.1,0"], "'0'"),
    ("negative_learning_rate", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--base_lr=-0.1"], "base_lr=-0.1"),
    ("missing_hierarchy_file", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", f"--hierarchy={f.path('no_such.tsv')}"],
     "no_such.tsv"),
    ("missing_data_dir", "select_expert",
     lambda f: ["--task=digits", f"--experts={f.collection}",
                f"--data_dir={f.path('no_such_data')}"], "no_such_data"),
    ("missing_flagfile", "vtab_eval", lambda f: [f"--flagfile={f.path('no_such_flags.txt')}"],
     "no_such_flags.txt"),
    ("missing_workdir_to_export", "export_experts",
     lambda f: [f"--workdir={f.path('no_such_run')}"], "no_such_run"),
    ("summary_of_missing_dir", "vtab_eval",
     lambda f: ["--summary", f"--results_dir={f.path('no_such_results')}"], "no_such_results"),
    # These need TensorFlow (a strategy, tfds, the hub exporter) but no model or dataset load.
    ("tpu_unreachable", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--tpu=grpc://127.0.0.1:1"], "grpc://127.0.0.1:1"),
    ("unknown_tfds_dataset", "train_experts",
     lambda f: [f"--workdir={f.path('w')}", "--dataset=no_such_dataset_xyz",
                f"--hierarchy={f.path('hierarchy_ok.json')}", f"--data_dir={f.data}"],
     "no_such_dataset_xyz"),
    ("unprepared_task", "select_expert",
     lambda f: ["--task=shapes_fine_tiny", f"--experts={f.collection}", "--cache_dir=",
                f"--data_dir={f.path('unprepared')}", f"--output_dir={f.path('out')}"],
     "tfexperts_shapes_fine/tiny"),
    ("export_of_empty_workdir", "export_experts",
     lambda f: [f"--workdir={f.path('empty_workdir')}", f"--export_dir={f.path('export')}"],
     "empty_workdir"),
]


def _run(binary, args):
  return processes.run_binary(binary, args, check_exit=False, timeout=300,
                              **{run_lib.VERBOSE_ENV: None})


@pytest.fixture(scope="module")
def files(tmp_path_factory, exported, offline_data_dir):
  return Files(str(tmp_path_factory.mktemp("bad_inputs")), exported, offline_data_dir)


@pytest.mark.parametrize("case_id,binary,args,names", BINARY_CASES,
                         ids=[c[0] for c in BINARY_CASES])
def test_binary_reports_bad_input(case_id, binary, args, names, files):
  del case_id
  proc = _run(binary, args(files))
  output = proc.stdout + proc.stderr
  assert proc.returncode == run_lib.EXIT_USER_ERROR, output[-3000:]
  assert "Traceback" not in output, output[-3000:]
  message = [line for line in proc.stderr.splitlines() if line.startswith(f"{binary}: error: ")]
  assert message and names in proc.stderr[proc.stderr.index(message[0]):], output[-3000:]


def _hierarchy(files, name):
  from tfexperts.data import hierarchy  # pylint: disable=g-import-not-at-top
  hierarchy.load_hierarchy(files.path(name))


def _unknown_classes(files):
  from tfexperts.data import upstream  # pylint: disable=g-import-not-at-top
  upstream.Upstream("tfexperts_shapes/tiny", files.path("unknown_class.json"),
                    data_dir=files.data)


def _summary(files, name):
  from tfexperts.transfer import report  # pylint: disable=g-import-not-at-top
  report.summarize(files.path(name))


def _knn(features, labels):
  from tfexperts.select import knn  # pylint: disable=g-import-not-at-top
  knn.loo_accuracy(features, labels)


def _nan_features():
  features = np.ones((4, 3))
  features[2, 1] = np.nan
  _knn(features, [0, 1, 0, 1])


def _module_with_wrong_output(files):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfexperts.hub import load  # pylint: disable=g-import-not-at-top
  path = files.path("feature_map_module")
  if not os.path.exists(path):
    module = tf.Module()
    module.__call__ = tf.function(lambda images: images * 2.0,
                                  input_signature=[tf.TensorSpec([None, None, None, 3])])
    tf.saved_model.save(module, path)
  load.load_expert(path)


def _corrupt_saved_model(files):
  from tfexperts.hub import load  # pylint: disable=g-import-not-at-top
  path = files.path("corrupt_module")
  if not os.path.exists(path):
    shutil.copytree(os.path.join(files.collection, "baseline", "1"), path)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
      f.write(b"\x08\x01 not a protocol buffer \xff\xfe")
  load.load_expert(path)


def _embed(files, images):
  from tfexperts.hub import load  # pylint: disable=g-import-not-at-top
  if not hasattr(files, "expert"):  # loaded once for the four image cases
    files.expert = load.load_expert(os.path.join(files.collection, "baseline", "1"))
  files.expert.embed(images)


# (id, call (a function of Files), what the message must name)
API_CASES = [
    ("cyclic_hierarchy", lambda f: _hierarchy(f, "cyclic.json"), "cycle"),
    ("malformed_hierarchy", lambda f: _hierarchy(f, "malformed.tsv"), "'a\\tb\\tc'"),
    ("hierarchy_missing_dataset_classes", _unknown_classes, "not in the hierarchy"),
    ("summary_of_empty_results", lambda f: _summary(f, "results_empty"), "results_empty"),
    ("summary_with_corrupt_record", lambda f: _summary(f, "corrupt_records"),
     "shapes_fine__knn.json"),
    ("knn_nan_features", lambda f: _nan_features(), "NaN"),
    ("knn_label_length_mismatch", lambda f: _knn(np.eye(4), [0, 1, 0]), "shape=(3,)"),
    ("knn_single_point", lambda f: _knn(np.ones((1, 3)), [0]), "at least 2 points"),
    ("module_output_not_features", _module_with_wrong_output, "feature_map_module"),
    ("corrupt_saved_model", _corrupt_saved_model, "corrupt_module"),
    ("integer_images", lambda f: _embed(f, np.zeros((2, 32, 32, 3), np.int32)), "int32"),
    ("one_channel_images", lambda f: _embed(f, np.zeros((2, 32, 32, 1), np.float32)),
     "(2, 32, 32, 1)"),
    ("four_channel_images", lambda f: _embed(f, np.zeros((2, 32, 32, 4), np.float32)),
     "(2, 32, 32, 4)"),
    ("images_of_wrong_rank", lambda f: _embed(f, np.zeros((32, 32, 3), np.float32)),
     "(32, 32, 3)"),
]


@pytest.mark.parametrize("case_id,call,names", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_reports_bad_input(case_id, call, names, files):
  del case_id
  with pytest.raises(errors.UserError) as info:
    call(files)
  assert names in str(info.value)


def test_flag_errors_come_before_tensorflow_loads(files):
  # README: flag values are checked before TensorFlow loads, so these errors take about a second.
  for binary, args in [("select_expert", ["--task=no_such_task", f"--experts={files.collection}"]),
                       ("vtab_eval", ["--task=digits", f"--experts={files.collection}",
                                      "--selection=knnn"])]:
    proc = processes.run_binary(binary, args, check_exit=False, timeout=300,
                                python_options=("-X", "importtime"))
    assert proc.returncode == run_lib.EXIT_USER_ERROR, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "numpy" in imported and "tensorflow" not in imported, binary
