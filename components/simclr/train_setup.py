"""Pretraining's checks and rules that need no TensorFlow: the run's plan, policy and
output locations are settled (and refused in one line) before TensorFlow starts; the
SIGTERM flag and the preemption exit."""

from __future__ import annotations

import signal
import threading
from typing import Any

from simclr import data, storage
from simclr.augment import AugmentPolicy, default_policy, load_policy
from simclr.train_config import PREEMPTED_EXIT_CODE, Plan, PretrainConfig, make_plan, validate_flags

# Below this many images per replica the contrastive task is nearly trivial (with 1 there
# are no negatives at all: loss 0, accuracy 1) and BatchNorm statistics are meaningless.
MIN_BATCH_PER_REPLICA = 8
# A replica's "checkpoint by time is due" vote: exact in float32 and < 1 (the stop vote)
# summed over up to 1023 replicas.
TIME_DUE_VOTE = 1.0 / 1024


class Preempted(SystemExit):
    """SIGTERM arrived: a checkpoint was written; exit with PREEMPTED_EXIT_CODE."""

    def __init__(self, step: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


class StopFlag:
    """Set by SIGTERM; the loop checks it after each step."""

    def __init__(self) -> None:
        self.set = False
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.set = True

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


Prepared = tuple[Plan, dict, AugmentPolicy]  # the plan, the data's manifest, the policy


def prepare(config: PretrainConfig) -> Prepared:
    """All checks that need no TensorFlow: flags, manifest, sizes, policy, outputs."""
    validate_flags(config)
    manifest = data.load_manifest(config.data_dir)
    plan = make_plan(config, manifest)
    policy = training_policy(config, plan)
    policy.validate()
    _check_output_locations(config, plan)
    return plan, manifest, policy


def training_policy(config: PretrainConfig, plan: Plan) -> AugmentPolicy:
    """--policy, or the preset for the data's image size (CIFAR-10 <= 32 px, else ImageNet)."""
    return load_policy(config.policy) if config.policy else default_policy(plan.image_size)


def _check_output_locations(config: PretrainConfig, plan: Plan) -> None:
    """Every place this run writes is probed before any work."""
    storage.check_writable(config.output_dir, "--output_dir")
    storage.check_writable(plan.checkpoint_dir, "--checkpoint_dir")
    storage.check_writable(plan.tensorboard_dir, "--tensorboard_dir")
    if config.cache_dir:
        storage.check_writable(config.cache_dir, "--cache_dir")


def remove_previous_outputs(output_dir: str) -> None:
    """Takes the previous run's published outputs away (metrics.json first: it marks a
    run as done) once this run is accepted, so a failure of this run never leaves them
    where a later step takes them for its own. A refused run leaves them alone."""
    storage.delete(storage.join(output_dir, "metrics.json"))
    storage.delete(storage.join(output_dir, "config.json"))
    # The SavedModel's config.json first too: it marks the export complete
    # (simclr.export.find_saved_model), and a prefix delete has no order.
    storage.delete(storage.join(output_dir, "encoder", "saved_model", "config.json"))
    storage.delete_dir(storage.join(output_dir, "encoder"))
