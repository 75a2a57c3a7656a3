"""The training cluster as TF_CONFIG describes it, without TensorFlow: how many tasks
train, and which one speaks for the run (the chief).

One reading of TF_CONFIG for every caller: the strategy choice (`distribute`), the flag
checks before TensorFlow loads (`train_config`) and the run lock (`run_lock`). The chief
rule is TensorFlow's own (`tensorflow/python/distribute/multi_worker_util.py`,
`is_chief`, v2.21): the "chief" task, or worker 0 when the cluster has no chief; an
"evaluator" is the chief of itself (it stands outside the training cluster); any other
task is not.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

from simclr.errors import UserError

TRAINING_TASK_TYPES = ("chief", "worker")
# The task types TensorFlow's multi-worker training accepts (multi_worker_util.py,
# _validate_cluster_spec, v2.21); AI Platform's TF 1 "master" is not one of them.
TASK_TYPES = ("chief", "worker", "evaluator", "ps")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """TF_CONFIG's cluster and this process's task (None: TF_CONFIG names no task)."""

    tasks: Mapping[str, list]
    task_type: str | None = None
    task_index: int = 0

    @property
    def training_tasks(self) -> int:
        """Chief + workers: the processes that train (at least 1)."""
        return sum(len(self.tasks.get(kind, [])) for kind in TRAINING_TASK_TYPES) or 1

    @property
    def is_chief(self) -> bool:
        """Whether this task writes the run's checkpoints, summaries and outputs."""
        if self.task_type in (None, "chief", "evaluator"):
            return True
        return "chief" not in self.tasks and self.task_type == "worker" and self.task_index == 0


def from_env(env: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster of TF_CONFIG in `env` (default os.environ); None without TF_CONFIG."""
    raw = (os.environ if env is None else env).get("TF_CONFIG")
    if not raw:
        return None
    try:
        tf_config = json.loads(raw)
        tasks = tf_config.get("cluster", {})
        task = tf_config.get("task", {})
        kind, index = task.get("type"), int(task.get("index", 0))
        if not isinstance(tasks, dict) or not all(isinstance(v, list) for v in tasks.values()):
            raise TypeError
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise UserError("TF_CONFIG is not valid JSON naming the cluster and this task") from None
    return Cluster(tasks=tasks, task_type=kind, task_index=index)


def training_tasks(env: Mapping[str, str] | None = None) -> int:
    """How many processes train (chief + workers); 1 without TF_CONFIG."""
    cluster = from_env(env)
    return 1 if cluster is None else cluster.training_tasks


def is_chief(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process speaks for a multi-worker run; True without TF_CONFIG. A
    task type TensorFlow refuses is one line here, not a traceback once training starts."""
    cluster = from_env(env)
    if cluster is None:
        return True
    named = {*cluster.tasks, *([cluster.task_type] if cluster.task_type else [])}
    unknown = sorted(named - set(TASK_TYPES))
    if unknown:
        raise UserError(
            f"TF_CONFIG names task type {', '.join(map(repr, unknown))}: TensorFlow's "
            f"multi-worker training takes {', '.join(TASK_TYPES)} ('master' is now 'chief')"
        )
    return cluster.is_chief
