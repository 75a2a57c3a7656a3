"""evaluate's label-free figures and gallery.html, from the real evaluate CLI on the
session's pretrained run (tests/fixtures_train.py: ResNet-18 x0.125, 79 SimCLR steps on
5,000 real CIFAR-10 images) against its random init; the page rendered by headless
Chromium (tests/fixtures_browser.py) and the TensorBoard images read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_browser import chromium, screenshot

ROOT = Path(__file__).resolve().parents[1]
NUM_TRAIN, NUM_TEST = 2000, 1000
LABEL_FREE = ("alignment", "uniformity", "effective_rank", "view_retrieval_top1")


@pytest.fixture(scope="module")
def evaluated(real_prepared_data, pretrained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_gallery")
    out, tb = root / "eval", root / "tb"
    cmd = [
        sys.executable,
        "-m",
        "simclr.tasks.evaluate",
        f"--data_dir={real_prepared_data}",
        f"--model_dir={pretrained_run}",
        f"--output_dir={out}",
        f"--tensorboard_dir={tb}",
        "--protocols=knn",
        f"--max_train_examples={NUM_TRAIN}",
        f"--max_test_examples={NUM_TEST}",
        "--embedding=pca",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "components"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, tb, json.loads((out / "metrics.json").read_text())


def test_label_free_figures_separate_pretrained_from_random_init(evaluated):
    """Wang & Isola 2020: a better encoder is more uniform (lower uniformity); Roy &
    Vetterli / RankMe: higher effective rank; own-view retrieval higher. The random
    encoder is near collapse, so its alignment is lower too: alignment is only read
    beside uniformity (not asserted). kNN moves with them."""
    _, _, metrics = evaluated
    base = metrics["baseline"]
    summary = {k: (metrics[k], base[k]) for k in (*LABEL_FREE, "knn_top1")}
    print(summary)
    assert metrics["settings"]["label_free_num_images"] == NUM_TEST
    assert metrics["uniformity"] < base["uniformity"] - 0.3, summary
    assert metrics["effective_rank"] > 2 * base["effective_rank"], summary
    assert metrics["view_retrieval_top1"] > 2 * base["view_retrieval_top1"], summary
    assert metrics["view_retrieval_top1"] > 10 / (2 * NUM_TEST - 1)  # chance: 1/1999
    assert metrics["knn_top1"] > base["knn_top1"], summary
    for figures in (metrics, base):
        assert 0 <= figures["alignment"] <= 4 and figures["uniformity"] <= 0
        assert 1 <= figures["effective_rank"] <= metrics["encoder"]["feature_dim"]


class _Gallery(HTMLParser):
    """encoder -> rows of (query index, [neighbour indices]); the map's dot count."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list] = {}
        self.dots: dict[str, int] = {}
        self.encoder = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.encoder = a["data-encoder"]
            self.rows[self.encoder], self.dots[self.encoder] = [], 0
        elif tag == "img" and a["class"] == "query":
            self.rows[self.encoder].append((int(a["data-index"]), []))
        elif tag == "img":
            self.rows[self.encoder][-1][1].append(int(a["data-index"]))
        elif tag == "circle":
            self.dots[self.encoder] += 1


def _page(out: Path) -> _Gallery:
    page = _Gallery()
    page.feed((out / "gallery.html").read_text())
    return page


def test_gallery_page_and_tensorboard_images(evaluated, real_prepared_data):
    import tensorflow as tf
    from simclr import data

    out, tb, metrics = evaluated
    page = _page(out)
    assert list(page.rows) == ["pretrained", "random_init"]
    for name, rows in page.rows.items():
        assert len(rows) == 16 and all(len(n) == 8 for _, n in rows), name
        assert page.dots[name] == NUM_TRAIN  # the map: one dot per bank image
    assert [q for q, _ in page.rows["pretrained"]] == [q for q, _ in page.rows["random_init"]]
    gallery = metrics["settings"]["gallery"]
    assert gallery["queries"] == 16 and gallery["k"] == 8 and gallery["map_method"] == "PCA"
    print({k: v for k, v in gallery.items() if k.startswith("label_agreement")})
    assert 0 <= gallery["label_agreement_pretrained"] <= 1

    # TensorBoard: the same retrieval as pixels, queries from the (whole) test split
    test_images, _ = data.load_arrays(real_prepared_data, "test")
    train_images, _ = data.load_arrays(real_prepared_data, "train", NUM_TRAIN, sample_seed=0)
    images = {}
    for path in (tb / "eval").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    encoded = tf.make_ndarray(value.tensor)[2]
                    images[value.tag] = tf.io.decode_png(encoded).numpy()
    grid = images["eval/gallery/pretrained"]
    assert grid.shape == (16 * 34, 9 * 34 + 2, 3)
    (query, neighbours) = page.rows["pretrained"][5]
    np.testing.assert_array_equal(grid[5 * 34 : 5 * 34 + 32, :32], test_images[query])
    np.testing.assert_array_equal(
        grid[5 * 34 : 5 * 34 + 32, 36:68], train_images[neighbours[0]]
    )  # the first neighbour, after the gap
    assert images["eval/map/random_init"].shape == (360, 360, 3)
    assert len(np.unique(images["eval/map/pretrained"].reshape(-1, 3), axis=0)) >= 10  # classes


_CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !i.complete || i.naturalWidth !== 32 || i.naturalHeight !== 32);
  document.body.setAttribute("data-images", imgs.length + "/" + bad.length);
});
</script></body>"""


def test_gallery_renders_in_headless_chromium(evaluated, tmp_path):
    """Every image decodes in the browser (a probe script on a copy of the page), and
    the screenshot shows the photos in both encoders' columns, not a blank page."""
    out, _, _ = evaluated
    probe = tmp_path / "probe.html"
    probe.write_text((out / "gallery.html").read_text().replace("</body>", _CHECK_IMAGES))
    dom = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         probe.as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout  # fmt: skip
    assert f'data-images="{2 * 16 * 9}/0"' in dom, dom[:300]

    pixels = screenshot(out / "gallery.html", tmp_path / "gallery.png", 1400, 1100).astype(int)
    # the two tables (measured on this page: x 16-510 and 545-1036, from y ~315 on),
    # pretrained on the left, random init on the right; the gap between them is blank
    assert (pixels[320:1100, 515:540] > 250).all()
    for left, right in ((16, 510), (545, 1036)):
        area = pixels[320:1100, left:right].reshape(-1, 3)
        assert (area.sum(axis=1) < 600).mean() > 0.2  # mostly photo, not white page
        assert len(np.unique(area, axis=0)) > 3000  # real pictures, many colours
    if os.environ.get("GALLERY_SCREENSHOT"):  # keep it (for a report)
        Path(os.environ["GALLERY_SCREENSHOT"]).write_bytes((tmp_path / "gallery.png").read_bytes())
