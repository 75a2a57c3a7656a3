"""Pretraining pays: on real CIFAR-10 the pretrained encoder beats its random init.

Uses the session's `pretrained_run` (ResNet-18 x0.125, 76 steps on 5,000 real images).
Measured (seeds 0-2: baseline weights and the random 2,000 train; 1,000 test): kNN top-1
0.294-0.309 vs 0.214-0.233 (gap >= 0.062), linear top-1 0.315-0.333 vs 0.251-0.278 (gap
>= 0.042). The margins asserted below are about half the smallest measured gap.
"""

from __future__ import annotations

import json
from pathlib import Path

from simclr.tasks import evaluate as task

KNN_MARGIN = 0.04
LINEAR_MARGIN = 0.02


def test_pretrained_encoder_beats_random_init(real_prepared_data, pretrained_run, tmp_path):
    out = tmp_path / "eval"
    metrics = task.run(
        task.EvaluateConfig(
            data_dir=real_prepared_data,
            model_dir=pretrained_run,
            output_dir=str(out),
            protocols="knn,linear",
            baseline="random_init",
            max_train_examples=2000,
            embedding="pca",
        )
    )
    baseline = metrics["baseline"]
    summary = json.dumps({"pretrained": metrics, "baseline": baseline}, default=str)
    assert metrics["num_train"] == 2000 and metrics["num_test"] == 1000
    assert metrics["knn_top1"] >= baseline["knn_top1"] + KNN_MARGIN, summary
    assert metrics["linear_top1"] >= baseline["linear_top1"] + LINEAR_MARGIN, summary
    assert metrics["linear_top5"] >= metrics["linear_top1"] > 0.1  # well above chance
    report = Path(out, "report.md").read_text()
    diff = 100 * (metrics["knn_top1"] - baseline["knn_top1"])
    assert f"{diff:+.2f} pts" in report
