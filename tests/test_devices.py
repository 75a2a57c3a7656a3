"""`--require_gpu`: no silent CPU fallback. Here TensorFlow is the CPU build and there is
no GPU, so the check must refuse, before any work, in one line, with exit 2."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf
from simclr import devices
from simclr.errors import UserError


def test_require_gpu_refuses_where_tensorflow_sees_none():
    assert not tf.config.list_physical_devices("GPU")  # the premise, from TensorFlow itself
    with pytest.raises(UserError) as caught:
        devices.require_gpu()
    message = str(caught.value)
    assert message.startswith("--require_gpu: TensorFlow sees no GPU")
    assert f"TensorFlow {tf.__version__}" in message
    if not tf.sysconfig.get_build_info().get("is_cuda_build"):
        assert "CPU-only build" in message


def test_driver_report_matches_the_machine():
    report = devices.nvidia_driver()
    visible = os.path.exists("/proc/driver/nvidia/version") or any(
        name.startswith("nvidia") and name[6:].isdigit() for name in os.listdir("/dev")
    )
    assert report.startswith("visible: ") if visible else report.startswith("not visible")


def test_pretrain_with_require_gpu_stops_before_any_work(tmp_path, tiny_prepared_data):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simclr.tasks.pretrain",
            "--require_gpu",
            f"--data_dir={tiny_prepared_data}",
            f"--output_dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --require_gpu: TensorFlow sees no GPU (TensorFlow ")
    assert "NVIDIA driver" in last and "Traceback" not in result.stderr
    assert not out.exists()  # nothing written, nothing a later step could take for output
