"""The `simclr-kfp` CLI, presets, and the adapters' parameter handling (no pipeline run)."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import local
from simclr_pipeline import adapters, cli, local_run, locations, platforms, presets, ui
from simclr_pipeline.options import PipelineOptions, Toleration
from simclr_pipeline.pipeline import build_pipeline, pipeline_parameters

REPO = Path(__file__).resolve().parents[1]


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "simclr_pipeline.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("compile", "run-local", "run-docker", "submit", "params"):
        assert command in result.stdout


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_presets_are_valid_parameters(name):
    types = pipeline_parameters(build_pipeline())
    args = cli.build_parser().parse_args(["params", f"--preset={name}"])
    values = cli.run_arguments(args, types)
    assert set(values) <= set(types)
    assert values == {k: v for k, v in values.items() if k in presets.PRESETS[name]}


def test_demo_preset_is_cpu_sized():
    demo = presets.preset("demo")
    assert demo["encoder"] == "resnet18" and demo["width_multiplier"] <= 0.25
    # A few minutes on a laptop CPU: at most ~50k images seen in pretraining.
    assert 0 < demo["max_train_examples"] * demo["epochs"] <= 50_000
    assert 0 < demo["eval_max_train_examples"] <= 10_000
    assert demo["precision"] == "float32"
    assert set(demo["eval_protocols"].split(",")) >= {"knn", "linear"}
    assert demo["baseline"] == "random_init" and demo["num_gpus"] == 0
    assert "source" not in demo  # the whole archive given by --source, official URL by default
    gpu = presets.preset("gpu")
    assert gpu["encoder"] == "resnet50" and gpu["num_gpus"] >= 1


def test_pipeline_defaults_are_the_gpu_preset():
    defaults = {n: p.default for n, p in build_pipeline().component_spec.inputs.items()}
    for name, value in presets.GPU.items():
        assert defaults[name] == value, name


def test_params_command_prints_values(capsys):
    assert cli.main(["params", "--preset=demo", "--param=epochs=9", "--source=/data/c.tgz"]) == 0
    out = capsys.readouterr().out
    assert '"resnet18"' in out.split("encoder")[1].splitlines()[0]
    assert " 9" in out.split("\nepochs")[1].splitlines()[0]
    assert "/data/c.tgz" in out


def test_bad_param_is_one_line(capsys):
    assert cli.main(["params", "--param=batch_size=big"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: parameter batch_size must be an integer, got 'big'"


def test_run_docker_without_docker_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(b"")
    code = cli.main(["run-docker", f"--root={tmp_path}", "--preset=test", f"--source={archive}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run-docker needs") and "\n" not in err
    assert not (tmp_path / "pipeline_root").exists()  # nothing started


def test_run_docker_with_a_missing_host_source_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere.tar.gz"
    code = cli.main(["run-docker", f"--root={tmp_path}", "--preset=test", f"--source={missing}"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: --source {missing}: no such file or folder"
    assert not (tmp_path / "pipeline_root").exists()


def test_run_docker_with_a_missing_host_eval_source_is_one_line(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    missing = tmp_path / "labelled"
    code = cli.main(
        [
            "run-docker",
            f"--root={tmp_path}",
            "--preset=test",
            f"--source={tmp_path / 'photos'}",
            f"--param=eval_source={missing}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --eval_source {missing}: no such file or folder"
    assert not (tmp_path / "pipeline_root").exists()


def test_docker_runner_settings_are_accepted_by_kfp(tmp_path):
    kwargs = local_run.docker_runner_kwargs([str(tmp_path)])
    assert set(kwargs) <= local.DockerRunner.DOCKER_CONTAINER_RUN_ARGS
    local.DockerRunner(**kwargs)  # kfp's own check of the arguments
    uid, gid = kwargs["user"].split(":")
    assert uid == str(os.getuid()) and gid == "0"  # the caller, in the images' group 0
    assert kwargs["network_mode"] == "host"
    (mount,) = kwargs["mounts"]
    assert (mount["Source"], mount["Target"], mount["ReadOnly"]) == (str(tmp_path),) * 2 + (True,)


def test_host_path_source(tmp_path, monkeypatch):
    (tmp_path / "a.tar.gz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert local_run.host_path_source("a.tar.gz") == str(tmp_path / "a.tar.gz")
    assert local_run.host_path_source(str(tmp_path / "a.tar.gz")) == str(tmp_path / "a.tar.gz")
    for uri in ("https://example.org/c.tar.gz", "gs://b/c.tar.gz", "s3://b/c.tar.gz", "", None):
        assert local_run.host_path_source(uri) is None


def test_compile_options_from_flags():
    args = cli.build_parser().parse_args(
        [
            "compile",
            "--image_repo=r",
            "--image_tag=t",
            "--gpu_image=nvcr.io/x/y:1",
            "--accelerator_type=amd.com/gpu",
            "--node_selector=pool=gpu",
            "--toleration=gpu=yes:NoSchedule",
        ]
    )
    options = cli.pipeline_options(args)
    assert options.images.cpu == "r/cpu:t" and options.images.gpu == "nvcr.io/x/y:1"
    assert options.accelerator_type == "amd.com/gpu"
    assert options.node_selector == (("pool", "gpu"),)
    assert options.tolerations == (Toleration("gpu", "Equal", "yes", "NoSchedule"),)
    vertex = cli.pipeline_options(cli.build_parser().parse_args(["compile", "--platform=vertex"]))
    assert vertex.accelerator_type == platforms.DEFAULT_ACCELERATOR["vertex"]
    assert (
        PipelineOptions().resolved().accelerator_type == platforms.DEFAULT_ACCELERATOR["kubeflow"]
    )


def test_compile_flag_defaults_are_the_pipeline_options():
    args = cli.build_parser().parse_args(["compile"])
    assert cli.pipeline_options(args) == PipelineOptions().resolved()


def test_toleration_parsing():
    assert Toleration.parse("k:NoExecute") == Toleration("k", "Exists", None, "NoExecute")
    assert Toleration.parse("k=v") == Toleration("k", "Equal", "v", None)
    with pytest.raises(ValueError):
        Toleration.parse("")


def test_summary_format(tmp_path):
    summary = {
        "preset": "demo",
        "seconds": 200.0,
        "pretrain": {"final_loss": 5.1, "steps": 45, "images_per_second": 310.5},
        "evaluation": {
            "knn_top1": 0.41,
            "linear_top1": 0.45,
            "baseline": {"knn_top1": 0.28, "linear_top1": 0.33},
        },
        "paths": {
            "root": "/r",
            "model": "/r/m",
            "encoder": "/r/m/encoder",
            "evaluation": "/r/e",
            "report": "/r/e/report.md",
            "tensorboard": "/r/tensorboard/1",
        },
    }
    text = local_run.format_summary(summary)
    assert "knn_top1                    0.4100      0.2800" in text
    assert "linear_top1                 0.4500      0.3300" in text
    assert "make tensorboard LOGDIR=/r/tensorboard/1" in text
    assert "/r/m/encoder" in text


# --- adapters (what runs inside the components) -------------------------------------------


@dataclasses.dataclass
class _Config:
    output_dir: str
    label_fractions: tuple[float, ...] = (0.01,)
    sha256: str | None = None
    max_train_examples: int | None = None
    blur: bool | None = None


def test_config_kwargs_coerces_kfp_values():
    kwargs = adapters.config_kwargs(
        _Config,
        {"output_dir": "/o", "label_fractions": "0.01, 0.1", "sha256": ""},
        {"max_train_examples": 300.0, "blur": "true"},  # dict params arrive as JSON numbers
    )
    assert kwargs == {
        "output_dir": "/o",
        "label_fractions": (0.01, 0.1),
        "max_train_examples": 300,
        "blur": True,
    }
    assert isinstance(kwargs["max_train_examples"], int)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"blur": "maybe"}, "blur must be true or false, got 'maybe'"),
        ({"blur": "off"}, "blur must be true or false"),
        ({"max_train_examples": 2.5}, "max_train_examples must be an integer, got 2.5"),
        ({"max_train_examples": "many"}, "max_train_examples must be an integer"),
        ({"label_fractions": "0.1,ten"}, "label_fractions must be a number, got 'ten'"),
    ],
)
def test_config_kwargs_refuses_values_it_cannot_convert(options, message):
    """An unknown word is a mistake, not False (the pipeline parameters' rule, one parser)."""
    with pytest.raises(adapters.AdapterError, match=re.escape(message)):
        adapters.config_kwargs(_Config, {"output_dir": "/o"}, options)


def test_config_kwargs_rejects_unknown_options():
    with pytest.raises(adapters.AdapterError, match="no field.*warmup_epochz"):
        adapters.config_kwargs(_Config, {"output_dir": "/o"}, {"warmup_epochz": 1})


def test_component_arguments_fit_the_task_configs():
    """Every name the pretrain/augment components pass is a field of the task config."""
    from simclr.tasks.augment import AugmentConfig
    from simclr.tasks.pretrain import PretrainConfig

    pretrain_params = {
        "data_dir": "/d",
        "output_dir": "/o",
        "policy": "/p/policy.json",
        "tensorboard_dir": "/tb",
        "checkpoint_dir": "/ck",
        **{
            k: v
            for k, v in presets.TEST.items()
            if k in {f.name for f in dataclasses.fields(PretrainConfig)}
        },
    }
    config = PretrainConfig(
        **adapters.config_kwargs(PretrainConfig, pretrain_params, presets.TEST["pretrain_options"])
    )
    assert config.encoder == "resnet18" and config.monitor_every_epochs == 0
    augment = AugmentConfig(
        **adapters.config_kwargs(
            AugmentConfig,
            {"data_dir": "/d", "output_dir": "/o", "seed": 0},
            {"color_jitter_strength": 1, "blur": 1.0},
        )
    )
    assert augment.color_jitter_strength == 1.0 and augment.blur is True


def test_metrics_flattening_and_html(tmp_path):
    flat = ui.flatten_metrics(
        {"knn_top1": 0.5, "baseline": {"knn_top1": 0.2}, "name": "x", "ok": True, "steps": 4}
    )
    assert flat == {"knn_top1": 0.5, "baseline_knn_top1": 0.2, "steps": 4.0}
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG fake")
    page = ui.images_html("T <1>", {"preview": str(png), "missing": str(tmp_path / "b.png")})
    assert "data:image/png;base64,iVBORyBmYWtl" in page and "T &lt;1&gt;" in page
    assert "missing" not in page
    md = ui.inline_images("![x](a.png) and [y](other.png)", str(tmp_path))
    assert "](data:image/png;base64," in md and "(other.png)" in md


def test_run_scoped_and_display_uris():
    assert locations.run_scoped_uri("gs://b/tb/", "123") == "gs://b/tb/123"

    class Art:
        path = "/gcs/b/root/pretrain/model"
        uri = "gs://b/root/pretrain/model"

    assert locations.display_uri("/gcs/b/root/pretrain/model/tensorboard", Art) == (
        "gs://b/root/pretrain/model/tensorboard"
    )
    assert locations.display_uri("gs://x/y", Art) == "gs://x/y"


def test_summary_json_roundtrip(tmp_path):
    class A:
        def __init__(self, path, metadata=None):
            self.path, self.metadata = str(path), metadata or {}

    (tmp_path / "m").mkdir()
    (tmp_path / "e").mkdir()
    (tmp_path / "m" / "metrics.json").write_text(json.dumps({"final_loss": 1.0}))
    (tmp_path / "e" / "metrics.json").write_text(json.dumps({"knn_top1": 0.3}))
    outputs = {
        "model": A(tmp_path / "m", {"tensorboard_logdir": "/tb/1"}),
        "evaluation": A(tmp_path / "e"),
    }
    summary = local_run.summarize(outputs, tmp_path, 12.3, "test")
    assert summary["pretrain"] == {"final_loss": 1.0}
    assert summary["evaluation"] == {"knn_top1": 0.3}
    assert summary["paths"]["tensorboard"] == "/tb/1"


@pytest.mark.parametrize(
    "content, message", [(None, "unreadable"), ("{not json", "not valid JSON"), ("[1]", "object")]
)
def test_unreadable_metrics_are_an_error_not_empty(tmp_path, content, message):
    path = tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(local_run.LocalRunError, match=message):
        local_run._read_json(str(path))


def test_run_local_failure_is_one_line(tmp_path, capsys):
    code = cli.main(
        ["run-local", "--preset=test", f"--root={tmp_path}", f"--source={tmp_path}/missing.tgz"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: pipeline failed:") and "prepare-data" in err
    assert "\x1b[" not in err


def test_bad_input_in_a_component_ends_its_log_with_the_reason(tmp_path):
    # The task's own one-line reason reaches the user, not a traceback.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simclr_pipeline.cli",
            "run-local",
            "--preset=test",
            f"--root={tmp_path}",
            f"--source={tmp_path}/missing.tgz",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2
    reason = [line for line in output.splitlines() if line.strip().startswith("error: ")]
    assert any("missing.tgz" in line for line in reason[:-1]), output[-2000:]
    assert "Traceback" not in output
