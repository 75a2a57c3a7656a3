"""Issue 19: never publish garbage as success (divergence, tiny batches, preemption code).

Each case runs the pretrain task CLI on real CIFAR-10 and checks the exit code, the one
`error:` line and that nothing non-finite is left where a later step would take it.
"""

from __future__ import annotations

import re
import signal

import numpy as np
import pytest
from simclr.train_config import PREEMPTED_EXIT_CODE

from tests.fixtures_train import pretrain_cli

TINY = [
    "--encoder=resnet18",
    "--width_multiplier=0.125",
    "--batch_size=32",
    "--max_train_examples=256",
    "--epochs=1",
    "--warmup_epochs=0",
    "--monitor_every_epochs=0",
    "--log_every_steps=1",
    "--seed=3",
]  # 8 steps


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _non_finite_tensors(prefix: str) -> list[str]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    bad = []
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating and not np.isfinite(reader.get_tensor(name)).all():
            bad.append(name)
    return bad


def test_divergence_exits_2_naming_the_step_and_keeps_only_finite_checkpoints(
    real_prepared_data, tmp_path
):
    """lr 1e6: BatchNorm moving variances go inf while the loss (batch statistics) stays
    finite; the run must stop at that step, with every checkpoint on disk finite."""
    out = tmp_path / "out"
    proc = pretrain_cli(
        [
            f"--data_dir={real_prepared_data}",
            f"--output_dir={out}",
            *TINY,
            "--learning_rate=1e6",
            "--checkpoint_every_steps=1",
        ]
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "training diverged at step" in errors[0], proc.stderr[-3000:]
    bad_step = int(re.search(r"at step (\d+)", errors[0]).group(1))
    ckpts = sorted((out / "checkpoints").glob("ckpt-*.index"), key=lambda p: int(p.name[5:-6]))
    assert all(int(p.name[5:-6]) < bad_step for p in ckpts)
    for index in ckpts:
        assert _non_finite_tensors(str(index)[: -len(".index")]) == [], index.name
    assert not (out / "metrics.json").exists()
    assert not (out / "encoder").exists()


def test_batch_without_negatives_is_refused(real_prepared_data, tmp_path):
    out = tmp_path / "out"
    proc = pretrain_cli(
        [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY, "--batch_size=4"],
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "at least 8 per replica" in errors[0], proc.stderr[-2000:]
    assert not (out / "metrics.json").exists()


def test_preemption_exit_code_is_143():
    """128 + SIGTERM: what a container killed by SIGTERM reports, and what the pipeline's
    retry policy (and our docs) treat as "preempted, retry". Pinned as a literal."""
    assert PREEMPTED_EXIT_CODE == 143 == 128 + signal.SIGTERM


@pytest.fixture(scope="module")
def finished_run(real_prepared_data, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("finished") / "out"
    args = [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY]
    proc = pretrain_cli([*args, "--learning_rate=0.5", "--checkpoint_every_steps=4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(out)


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--learning_rate=5"], ["learning_rate 0.5 -> 5.0"]),
        (["--width_multiplier=0.25"], ["width_multiplier 0.125 -> 0.25"]),
        (["--epochs=2"], ["epochs 1.0 -> 2.0", "--extend_schedule"]),
        (["--temperature=0.2", "--projection_dim=64"], ["temperature", "projection_dim"]),
    ],
)
def test_resume_with_other_settings_is_refused(real_prepared_data, finished_run, flags, needles):
    import json
    from pathlib import Path

    config_before = Path(finished_run, "config.json").read_text()
    args = [f"--data_dir={real_prepared_data}", f"--output_dir={finished_run}", *TINY]
    proc = pretrain_cli([*args, "--learning_rate=0.5", *flags], timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and all(n in errors[0] for n in needles), proc.stderr[-3000:]
    assert Path(finished_run, "config.json").read_text() == config_before  # not rewritten
    assert json.loads(config_before)["learning_rate"] == 0.5


def test_extend_schedule_allows_more_epochs(real_prepared_data, finished_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    args = [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY]
    proc = pretrain_cli(
        [*args, "--learning_rate=0.5", "--epochs=2", "--extend_schedule"], timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert re.search(r"resumed from \S+ckpt-8 at step 8", logs), logs[-3000:]


def _copy_data(real_prepared_data, tmp_path):
    import json
    import shutil
    from pathlib import Path

    data_dir = tmp_path / "data"
    shutil.copytree(real_prepared_data, data_dir)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    return data_dir, manifest, Path


def _flip_bytes(path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    for i in range(at, at + 100):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_training_shard_fails_naming_it(real_prepared_data, tmp_path):
    data_dir, manifest, _ = _copy_data(real_prepared_data, tmp_path)
    shard = manifest["splits"]["train"]["shards"][0]["file"]
    _flip_bytes(data_dir / shard, 5000)
    out = tmp_path / "out"
    proc = pretrain_cli([f"--data_dir={data_dir}", f"--output_dir={out}", *TINY], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and shard in errors[0] and "sha256" in errors[0], proc.stderr[-2000:]
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_damaged_training_shard_without_sha256_is_one_line(damage, real_prepared_data, tmp_path):
    """No sha256 to check first: the record CRC (or the cut) is met inside a training
    step, and is one line naming the data, not tf.data's DataLossError traceback."""
    import json

    data_dir, manifest, _ = _copy_data(real_prepared_data, tmp_path)
    entry = manifest["splits"]["train"]["shards"][0]
    del entry["sha256"]
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    shard = data_dir / entry["file"]
    if damage == "flipped":
        _flip_bytes(shard, 5000)
    else:
        shard.write_bytes(shard.read_bytes()[:-5000])
    out = tmp_path / "out"
    args = [f"--data_dir={data_dir}", f"--output_dir={out}", *TINY, "--max_train_examples=0"]
    proc = pretrain_cli(args, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "a training shard is corrupt" in errors[0], proc.stderr[-2000:]
    assert str(data_dir) in errors[0] and "Traceback" not in proc.stderr
    assert not (out / "metrics.json").exists()


def test_numpy_fast_path_checks_record_crcs(real_prepared_data, tmp_path):
    """Without a sha256 in the manifest, the record CRCs still catch flipped bytes."""
    import json

    from simclr import data
    from simclr.errors import UserError

    data_dir, manifest, _ = _copy_data(real_prepared_data, tmp_path)
    entry = manifest["splits"]["test"]["shards"][0]
    del entry["sha256"]
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    _flip_bytes(data_dir / entry["file"], 20000)
    with pytest.raises(UserError, match=r"fails its CRC check"):
        data.load_arrays(str(data_dir), "test")


def test_bogus_sha256_and_excess_count_are_one_line(real_prepared_data, tmp_path):
    import json

    from simclr import data
    from simclr.errors import UserError

    data_dir, manifest, _ = _copy_data(real_prepared_data, tmp_path)
    entry = manifest["splits"]["test"]["shards"][0]
    entry["sha256"] = "0" * 64
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=rf"shard {entry['file']} is corrupt: its sha256"):
        data.load_arrays(str(data_dir), "test")
    del entry["sha256"]
    entry["num_examples"] += 666
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=rf"shard {entry['file']} holds \d+ records, the manifest"):
        data.load_arrays(str(data_dir), "test")


def test_records_off_the_template_are_not_parsed_by_the_fast_path(tmp_path):
    """A record of the right length whose protobuf layout differs (feature key renamed)
    must not be read as an image by the numpy fast path: it goes to TensorFlow's parser,
    which refuses it (no "image" feature) with one line."""
    import tensorflow as tf
    from simclr import data
    from simclr.errors import UserError

    images = np.zeros((3, 32, 32, 3), np.uint8)
    records = data.serialize_examples(images, np.array([1, 2, 3]))
    path = tmp_path / "odd.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(bytes(record).replace(b"image", b"imagf"))
    good = tmp_path / "good.tfrecord"
    with tf.io.TFRecordWriter(str(good)) as writer:
        for record in records:
            writer.write(bytes(record))
    assert data.read_record_file(str(good))[1].tolist() == [1, 2, 3]
    with pytest.raises(UserError, match="corrupt TFRecord file"):
        data.read_record_file(str(path))


@pytest.mark.parametrize("flag", ["--output_dir", "--checkpoint_dir", "--tensorboard_dir"])
def test_unwritable_output_location_is_refused_before_work(real_prepared_data, tmp_path, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = tmp_path / "out"
    args = [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY]
    proc = pretrain_cli([*args, f"{flag}={blocker}/sub"], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and f"{flag} {blocker}/sub is not writable" in errors[0], errors
    assert "strategy" not in proc.stdout + proc.stderr  # refused before the trainer started


def test_failed_rerun_leaves_no_previous_outputs(real_prepared_data, finished_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    shutil.rmtree(out / "checkpoints")
    assert (out / "metrics.json").exists()
    args = [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY]
    proc = pretrain_cli([*args, "--learning_rate=1e6", "--checkpoint_every_steps=1"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not (out / "metrics.json").exists() and not (out / "encoder").exists()
    assert not (out / "config.json").exists()


def test_evaluate_trusts_the_encoder_file_over_config_json(tmp_path, capsys):
    """A width-0.25 encoder.keras beside a config.json claiming 0.125 (64-d): the loaded
    config (report, random-init baseline) says what the file is: 0.25, 128-d."""
    import json

    from simclr.model import build_encoder, load_encoder, save_encoder

    uri = tmp_path / "encoder"
    save_encoder(build_encoder("resnet18", 0.25), str(uri), config={})
    claimed = json.loads((uri / "config.json").read_text())
    assert claimed["feature_dim"] == 128
    claimed.update(width_multiplier=0.125, feature_dim=64)
    (uri / "config.json").write_text(json.dumps(claimed))
    _, config = load_encoder(str(uri))
    assert config["width_multiplier"] == 0.25 and config["feature_dim"] == 128
    assert "feature_dim 64 (the file: 128)" in capsys.readouterr().err


def test_linear_probe_standardises_features_on_very_different_scales():
    """The class signal sits in a feature of scale 1e-4 beside noise of scale 1e3: with
    the probe's L2 penalty (C <= 1) only a standardised probe can use it."""
    from simclr.evaluate import linear_probe

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    signal_feature = (labels * 2.0 - 1.0 + rng.normal(0, 0.3, 400)) * 1e-4
    features = np.stack([signal_feature, rng.normal(0, 1e3, 400)], axis=1)
    probe = linear_probe(features[:300], labels[:300], features[300:], c_grid=(0.01, 0.1, 1.0))
    accuracy = np.mean(np.argmax(probe.scores, axis=1) == labels[300:])
    assert accuracy > 0.9, accuracy


def test_colour_jitter_ranges_are_the_published_ones():
    """google-research/simclr data_util.py `color_jitter(image, strength)`: brightness,
    contrast and saturation 0.8 * strength, hue 0.2 * strength; CIFAR-10 uses strength
    0.5 (the paper's appendix B.9). Literal values, so turning hue off is caught."""
    from simclr.augment import AugmentPolicy

    policy = AugmentPolicy()
    assert policy.color_jitter_strength == 0.5
    assert (policy.brightness, policy.contrast, policy.saturation) == (0.4, 0.4, 0.4)
    assert policy.hue == pytest.approx(0.1)
    assert AugmentPolicy(color_jitter_strength=1.0).hue == pytest.approx(0.2)


def test_random_init_baseline_is_not_the_pretrained_encoder(
    tiny_prepared_data, tmp_path, monkeypatch
):
    """Fast: evaluate's baseline factory builds a fresh encoder of the same architecture,
    never the pretrained weights (captured at the evaluate_encoder seam)."""
    import keras
    from simclr import evaluate as ev
    from simclr.model import build_encoder, save_encoder
    from simclr.tasks import evaluate as task

    keras.utils.set_random_seed(7)
    save_encoder(build_encoder("resnet18", 0.125), str(tmp_path / "model" / "encoder"), config={})
    models = []
    real = ev.evaluate_encoder

    def capture(factory, *args, **kwargs):
        models.append(factory())
        return real(factory, *args, **kwargs)

    monkeypatch.setattr(ev, "evaluate_encoder", capture)
    config = task.EvaluateConfig(
        data_dir=tiny_prepared_data,
        model_dir=str(tmp_path / "model"),
        output_dir=str(tmp_path / "out"),
        protocols="knn",
        baseline_protocols="knn",
    )
    task.run(config)
    pretrained, baseline = models
    a, b = pretrained.get_weights(), baseline.get_weights()
    assert [w.shape for w in a] == [w.shape for w in b]
    kernels = [i for i, w in enumerate(a) if w.ndim == 4]
    assert kernels and all(not np.allclose(a[i], b[i]) for i in kernels)
