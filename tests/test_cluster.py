"""simclr.cluster: TF_CONFIG read once, TensorFlow-free, with TensorFlow's chief rule.

The rule is checked against TensorFlow's own `multi_worker_util.is_chief`
(tensorflow/python/distribute/multi_worker_util.py, the installed 2.21), case by case.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from simclr import cluster
from simclr.errors import UserError

CLUSTERS = {
    "chief+2 workers": {"chief": ["c:1"], "worker": ["a:1", "b:1"]},
    "2 workers": {"worker": ["a:1", "b:1"]},
    "chief+worker+evaluator+ps": {
        "chief": ["c:1"],
        "worker": ["a:1"],
        "evaluator": ["e:1"],
        "ps": ["p:1"],
    },
}
TASKS = [
    (name, kind, index)
    for name, tasks in CLUSTERS.items()
    for kind, addresses in tasks.items()
    for index in range(len(addresses))
]


@pytest.mark.parametrize("name, kind, index", TASKS)
def test_chief_rule_is_tensorflows(name: str, kind: str, index: int) -> None:
    from tensorflow.python.distribute import multi_worker_util

    env = {
        "TF_CONFIG": json.dumps({"cluster": CLUSTERS[name], "task": {"type": kind, "index": index}})
    }
    want = multi_worker_util.is_chief(CLUSTERS[name], kind, index)
    assert cluster.is_chief(env) is want


def test_training_tasks_counts_chief_and_workers_only() -> None:
    def count(tasks: dict) -> int:
        return cluster.training_tasks({"TF_CONFIG": json.dumps({"cluster": tasks})})

    assert count(CLUSTERS["chief+2 workers"]) == 3
    assert count(CLUSTERS["chief+worker+evaluator+ps"]) == 2
    assert count({}) == 1
    assert cluster.training_tasks({}) == 1 and cluster.is_chief({})


def test_a_task_named_nowhere_speaks_for_itself() -> None:
    env = {"TF_CONFIG": json.dumps({"cluster": CLUSTERS["2 workers"]})}
    assert cluster.is_chief(env)


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1]",
        json.dumps({"cluster": ["a:1"]}),
        json.dumps({"cluster": {"worker": "a:1"}}),
        json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "x"}}),
    ],
)
def test_bad_tf_config_is_one_user_error(raw: str) -> None:
    with pytest.raises(UserError, match="^TF_CONFIG is not valid JSON"):
        cluster.from_env({"TF_CONFIG": raw})


def test_cluster_module_loads_no_tensorflow() -> None:
    code = "import sys, simclr.cluster; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", ["master", "client"])
def test_task_types_tensorflow_refuses_are_refused_first(kind: str) -> None:
    from tensorflow.python.distribute import multi_worker_util

    tasks = {kind: ["a:1"], "worker": ["b:1"]}
    with pytest.raises(ValueError):  # what MultiWorkerMirroredStrategy would meet later
        multi_worker_util._validate_cluster_spec(tasks, kind, 0)
    env = {"TF_CONFIG": json.dumps({"cluster": tasks, "task": {"type": kind, "index": 0}})}
    with pytest.raises(UserError, match=f"^TF_CONFIG names task type '{kind}'"):
        cluster.is_chief(env)


def test_every_task_type_we_accept_tensorflow_accepts() -> None:
    from tensorflow.python.distribute import multi_worker_util

    tasks = {kind: ["a:1"] for kind in cluster.TASK_TYPES}
    for kind in cluster.TASK_TYPES:
        multi_worker_util._validate_cluster_spec(tasks, kind, 0)
