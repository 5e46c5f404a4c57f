"""Unknown names (task, proxy, preset, stage, strategy, collection) suggest the closest valid one."""
import pytest

from tfexperts import errors
from tfexperts.data import tasks
from tfexperts.hub import published
from tfexperts.models import bit
from tfexperts.select import proxies
from tfexperts.train import strategy


def test_did_you_mean_names_the_closest_valid_name_or_nothing():
  assert errors.did_you_mean("knnn", ["random", "knn", "logme"]) == " Did you mean 'knn'?"
  assert errors.did_you_mean("zzzz", ["random", "knn", "logme"]) == ""
  assert errors.did_you_mean("x", []) == ""


@pytest.mark.parametrize("call, name, suggestion", [
    (tasks.get_task, "cifar10", "cifar100"),
    (tasks.get_task, "oxford_flower102", "oxford_flowers102"),
    (proxies.get, "log_me", "logme"),
    (bit.create_model, "r50_x1", "r50x1"),
    (published.read, "tfhub:bit-experts-r50x1-in21", "tfhub:bit-experts-r50x1-in21k"),
    (lambda name: strategy.make_strategy(strategy=name), "mirored", "mirrored"),
])
def test_unknown_names_suggest_the_closest(call, name, suggestion):
  with pytest.raises(ValueError, match=f"Did you mean '{suggestion}'") as raised:
    call(name)
  assert repr(name) in str(raised.value)
