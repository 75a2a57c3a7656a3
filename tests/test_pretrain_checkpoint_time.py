"""`--checkpoint_every_seconds`: a checkpoint is written when it or the step interval is due.

Why (issue 15, item 6): on Kubeflow, KFP's launcher (kubeflow/pipelines 2.17.0,
backend/src/v2/component/launcher_v2.go) starts the command with a plain exec.Command and
handles no signal, so on preemption the container ends seconds after SIGTERM and the
"checkpoint on SIGTERM" may not finish: the time interval bounds what is lost.
"""

from __future__ import annotations

import re

from tests.fixtures_train import pretrain_cli

SMALL = [
    "--encoder=resnet18",
    "--width_multiplier=0.125",
    "--batch_size=32",
    "--max_train_examples=128",
    "--epochs=2",
    "--learning_rate=0.5",
    "--warmup_epochs=0.5",
    "--monitor_every_epochs=0",
    "--log_every_steps=1",
    "--checkpoint_every_steps=1000",
    "--keep_checkpoints=100",
    "--seed=1",
]  # 4 steps per epoch, 8 steps


def _saved_steps(checkpoint_dir) -> list[int]:
    names = [p.name for p in checkpoint_dir.iterdir()]
    return sorted({int(m.group(1)) for n in names if (m := re.match(r"ckpt-(\d+)\.index$", n))})


def test_time_interval_checkpoints_between_step_intervals(real_prepared_data, tmp_path):
    often = pretrain_cli(
        [
            *SMALL,
            f"--data_dir={real_prepared_data}",
            f"--output_dir={tmp_path / 'often'}",
            "--checkpoint_every_seconds=0.000001",
        ]
    )
    assert often.returncode == 0, often.stderr[-2000:]
    # Every step is past the interval: each one is saved, though the step interval is 1000.
    assert _saved_steps(tmp_path / "often" / "checkpoints") == list(range(1, 9))

    rare = pretrain_cli(
        [
            *SMALL,
            f"--data_dir={real_prepared_data}",
            f"--output_dir={tmp_path / 'rare'}",
            "--checkpoint_every_seconds=100000",
        ]
    )
    assert rare.returncode == 0, rare.stderr[-2000:]
    assert _saved_steps(tmp_path / "rare" / "checkpoints") == [8]  # only the final one


def test_checkpoint_every_seconds_must_be_positive(real_prepared_data, tmp_path):
    proc = pretrain_cli(
        [
            *SMALL,
            f"--data_dir={real_prepared_data}",
            f"--output_dir={tmp_path}",
            "--checkpoint_every_seconds=0",
        ]
    )
    assert proc.returncode == 2
    assert "error: --checkpoint_every_seconds must be > 0" in proc.stderr


def test_vertex_tensorboard_env_is_the_default_log_dir():
    """CONTRACT: AIP_TENSORBOARD_LOG_DIR is used when set and --tensorboard_dir is not."""
    from simclr.tasks.pretrain import PretrainConfig, with_vertex_tensorboard

    env = {"AIP_TENSORBOARD_LOG_DIR": "gs://b/logs/"}
    base = PretrainConfig(data_dir="d", output_dir="o")
    assert with_vertex_tensorboard(base, env).tensorboard_dir == "gs://b/logs/"
    explicit = PretrainConfig(data_dir="d", output_dir="o", tensorboard_dir="gs://mine")
    assert with_vertex_tensorboard(explicit, env).tensorboard_dir == "gs://mine"
    assert with_vertex_tensorboard(base, {}).tensorboard_dir == ""
