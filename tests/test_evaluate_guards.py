"""Evaluate never turns a diverged encoder into figures (issue 19: an encoder with
non-finite BatchNorm statistics used to end in sklearn's `Input X contains NaN`
traceback): one `error:` line, exit 2, no metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("value", "needle"), [(np.inf, "non-finite weights"), (np.nan, "non-finite weights")]
)
def test_encoder_with_non_finite_weights_is_one_line(tiny_prepared_data, tmp_path, value, needle):
    import keras
    from simclr.model import build_encoder, save_encoder

    keras.utils.set_random_seed(7)
    encoder = build_encoder("resnet18", 0.125)
    variances = [v for v in encoder.weights if "moving_variance" in v.path]
    assert variances
    poisoned = variances[len(variances) // 2]
    poisoned.assign(np.full(poisoned.shape, value, np.float32))
    model_dir = tmp_path / "model"
    save_encoder(
        encoder,
        str(model_dir / "encoder"),
        config={"encoder": "resnet18", "width_multiplier": 0.125},
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "simclr.tasks.evaluate",
        f"--data_dir={tiny_prepared_data}",
        f"--model_dir={model_dir}",
        f"--output_dir={out}",
        "--protocols=knn,linear",
        "--baseline=none",
        "--max_test_examples=40",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "components"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "metrics.json").exists()


def test_non_finite_features_are_refused_even_with_finite_weights():
    """A model whose outputs overflow (finite weights) is refused just the same."""
    import keras
    from simclr import evaluate as ev
    from simclr.errors import UserError

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 1e30 * 1e30)(inputs))
    with pytest.raises(UserError, match="non-finite features for 2 of 2"):
        ev.extract_features(model, np.ones((2, 4), np.float32))
