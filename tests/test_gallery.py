"""The HTML gallery (simclr.gallery) on real CIFAR-10 images, parsed with html.parser;
rendered by headless Chromium (Debian's `chromium` package: skipped without it, failed
under CI=true, see tests/fixtures_browser.py)."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from simclr import gallery

from tests.fixtures_browser import screenshot
from tests.fixtures_images import cifar_jpegs


@pytest.fixture(scope="module")
def real_images():
    files = cifar_jpegs().files[:300]
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, _, data in files]
    )
    labels = np.array([label for _, label, _ in files])
    return images, labels, cifar_jpegs().classes


class _Page(HTMLParser):
    """Collects, per encoder section, its query rows (query img + neighbour imgs)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[dict]] = {}
        self.maps: dict[str, int] = {}
        self.current = None
        self.current_map = None
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("class") == "encoder":
            self.current = a["data-encoder"]
            self.sections[self.current] = []
        elif tag == "tr" and a.get("class") == "query-row":
            self.sections[self.current].append({"query": None, "neighbours": []})
        elif tag == "img":
            self.images.append(a)
            row = self.sections[self.current][-1]
            if a["class"] == "query":
                row["query"] = a
            else:
                row["neighbours"].append(a)
        elif tag == "svg" and a.get("class") == "pca-map":
            self.current_map = a["data-encoder"]
            self.maps[self.current_map] = 0
        elif tag == "circle":
            self.maps[self.current_map] += 1


def _features(labels: np.ndarray, informative: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(len(labels), 16))
    return noise + (6.0 * np.eye(16)[labels] if informative else 0.0)


def test_gallery_has_16_queries_with_8_neighbours_per_encoder(real_images, tmp_path):
    images, labels, classes = real_images
    query, bank = slice(0, 100), slice(100, 300)
    features = {
        "pretrained": _features(labels, True, 0),
        "random_init": _features(labels, False, 1),
    }
    path = tmp_path / "gallery.html"
    summary = gallery.write_gallery_html(
        str(path),
        query_images=images[query],
        bank_images=images[bank],
        query_features={k: v[query] for k, v in features.items()},
        bank_features={k: v[bank] for k, v in features.items()},
        query_labels=labels[query],
        bank_labels=labels[bank],
        class_names=classes,
    )
    page = _Page()
    page.feed(path.read_text())
    assert list(page.sections) == ["pretrained", "random_init"]
    for name, rows in page.sections.items():
        assert len(rows) == 16
        assert all(r["query"] is not None and len(r["neighbours"]) == 8 for r in rows)
        # the neighbours shown are the true nearest ones, nearest first
        q = features[name][query][summary["queries"]]
        b = features[name][bank]
        sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
            b / np.linalg.norm(b, axis=1, keepdims=True)
        ).T
        want = np.argsort(-sims, axis=1)[:, :8]
        shown = [[int(n["data-index"]) for n in r["neighbours"]] for r in rows]
        assert shown == want.tolist()
        assert [int(r["query"]["data-index"]) for r in rows] == summary["queries"]
        assert page.maps[name] == 200  # one dot per bank image
    # informative features retrieve the same class, noise does not
    agreement = {k: v["label_agreement"] for k, v in summary["encoders"].items()}
    assert agreement["pretrained"] > 0.9 and agreement["random_init"] < 0.3
    # every image is an inlined PNG of the real picture
    assert len(page.images) == 2 * 16 * 9
    first = page.sections["pretrained"][0]["query"]
    assert first["src"].startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(first["src"].split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(decoded), images[query][summary["queries"][0]])
    assert "http" not in path.read_text().replace("http-equiv", "")  # no network needed


def test_unlabelled_gallery_and_bad_input(real_images, tmp_path):
    from simclr.errors import UserError

    images, labels, _ = real_images
    feats = _features(labels, True, 0)
    summary = gallery.write_gallery_html(
        str(tmp_path / "g.html"),
        query_images=images[:10],
        bank_images=images[10:15],
        query_features={"pretrained": feats[:10]},
        bank_features={"pretrained": feats[10:15]},
    )
    assert len(summary["queries"]) == 10 and summary["k"] == 5
    assert "label_agreement" not in summary["encoders"]["pretrained"]
    with pytest.raises(UserError, match="do not match"):
        gallery.write_gallery_html(
            str(tmp_path / "x.html"),
            query_images=images[:10],
            bank_images=images[10:20],
            query_features={"a": feats[:9]},
            bank_features={"a": feats[10:20]},
        )


def test_pca_map_recovers_the_main_axes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    points = gallery.pca_2d(x @ rotation + 40.0)  # an offset: PCA centres first
    np.testing.assert_allclose(np.abs(np.corrcoef(points[:, 0], x[:, 0])[0, 1]), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.abs(np.corrcoef(points[:, 1], x[:, 1])[0, 1]), 1.0, atol=1e-2)


def test_gallery_renders_in_headless_chromium(real_images, tmp_path):
    images, labels, classes = real_images
    feats = {"pretrained": _features(labels, True, 0)}
    path = tmp_path / "gallery.html"
    gallery.write_gallery_html(
        str(path),
        query_images=images[:50],
        bank_images=images[50:],
        query_features={"pretrained": feats["pretrained"][:50]},
        bank_features={"pretrained": feats["pretrained"][50:]},
        query_labels=labels[:50],
        bank_labels=labels[50:],
        class_names=classes,
    )
    pixels = screenshot(path, tmp_path / "shot.png", 1200, 1400).astype(int)
    # the photos rendered: many distinct, non-white colours in the gallery's area
    area = pixels[100:900, :600].reshape(-1, 3)
    assert (area.sum(axis=1) < 600).mean() > 0.2
    assert len(np.unique(area, axis=0)) > 1000


def test_retrieval_grid_for_tensorboard(real_images):
    images, _, _ = real_images
    neighbours = np.array([[5, 6, 7], [8, 9, 10]])
    grid = gallery.retrieval_grid(images[:2], images[100:], neighbours)
    assert grid.shape == (2 * 34, 4 * 34 + 2, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[:32, :32], images[0])
    np.testing.assert_array_equal(grid[34:66, 36:68], images[108])  # row 1, first neighbour
    np.testing.assert_array_equal(grid[:32, 3 * 34 + 2 : 3 * 34 + 34], images[107])


def test_map_is_pca_without_umap_and_draws_each_label_in_its_colour():
    from simclr.errors import UserError

    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    points, method = gallery.map_2d(features, "pca")
    assert method == "PCA"
    np.testing.assert_allclose(points, gallery.pca_2d(features))
    if not gallery.umap_available():  # umap-learn is optional, not in constraints.txt
        assert gallery.map_2d(features, "auto")[1] == "PCA"
        with pytest.raises(UserError, match="umap-learn"):
            gallery.map_2d(features, "umap")
    labels = np.array([0, 3, -1, 9] * 10)
    image = gallery.map_image(points, labels, size=100)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    colours = {tuple(c) for c in image.reshape(-1, 3)} - {(255, 255, 255)}
    want = {(0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x99, 0x99, 0x99), (0x17, 0xBE, 0xCF)}
    assert colours == want  # tab10 blue, red, cyan; grey for unlabelled
