"""A pipeline that asks for GPUs never trains on a CPU by accident (issue 19's mutation list:
`require_gpu` no longer set when GPUs are requested). No Docker: the pretrain component's
own body (the function KFP embeds and runs in the pod) is called with artifacts laid out as
KFP's launcher lays them out, on this machine, where TensorFlow sees no GPU."""

from __future__ import annotations

import json
import types

import pytest
from simclr_pipeline import components


def _artifact(path, metadata=None):
    return types.SimpleNamespace(path=str(path), uri=str(path), metadata=dict(metadata or {}))


def _call_pretrain(tmp_path, data_dir, num_gpus: int, options: dict | None = None):
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "policy.json").write_text(json.dumps({}))
    components.pretrain(  # the undecorated body the component embeds
        dataset=_artifact(data_dir),
        policy=_artifact(policy_dir, {"file": "policy.json"}),
        run_id="run-1",
        model=_artifact(tmp_path / "model"),
        pretrain_metrics=_artifact(tmp_path / "metrics"),
        tensorboard=_artifact(tmp_path / "tensorboard.md"),
        encoder="resnet18",
        width_multiplier=0.125,
        stem="auto",
        epochs=1,
        batch_size=32,
        learning_rate=0.5,
        temperature=0.5,
        max_train_examples=64,
        checkpoint_every_steps=100,
        checkpoint_every_seconds=600.0,
        precision="float32",
        strategy="auto",
        seed=0,
        tensorboard_root="",
        checkpoint_root="",
        num_gpus=num_gpus,
        options=options or {},
    )


def test_requested_gpus_stop_the_task_where_tensorflow_sees_none(
    tiny_prepared_data, tmp_path, capsys
):
    with pytest.raises(SystemExit) as stopped:
        _call_pretrain(tmp_path, tiny_prepared_data, num_gpus=1)
    assert stopped.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--require_gpu" in errors[0] and "no GPU" in errors[0], errors
    assert not (tmp_path / "model" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"warmup_epochz": 1}, "no field(s) warmup_epochz"), ({"epochs": 2.5}, "epochs")],
)
def test_bad_options_are_one_line_not_a_traceback(
    tiny_prepared_data, tmp_path, capsys, options, needle
):
    """issue 18: `adapters._run_task` built the config outside its `try`, so a misspelt or
    mistyped `pretrain_options` key escaped as a traceback in the pod log. Through the
    component's own body, as the pod runs it."""
    with pytest.raises(SystemExit) as stopped:
        _call_pretrain(tmp_path, tiny_prepared_data, num_gpus=0, options=options)
    assert stopped.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], errors
