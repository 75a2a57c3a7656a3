"""simclr.data: the record format, the readers and the tf.data pipeline."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from simclr import cifar, data
from simclr.errors import UserError
from simclr.tasks import prepare_data

from tests.fixtures_data import CLASS_NAMES, make_synthetic_archive


def test_serialized_examples_are_tf_examples() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 9, 4])
    for row, image, label in zip(
        data.serialize_examples(images, labels), images, labels, strict=True
    ):
        example = tf.train.Example.FromString(row.tobytes())
        feature = example.features.feature
        assert feature["image"].bytes_list.value[0] == image.tobytes()
        assert list(feature["label"].int64_list.value) == [label]
        parsed_image, parsed_label = data.parse_example(tf.constant(row.tobytes()))
        np.testing.assert_array_equal(parsed_image.numpy(), image)
        assert parsed_label.dtype == tf.int64 and int(parsed_label) == label


@pytest.mark.parametrize("layout", ["binary", "python"])
def test_round_trip_every_image_and_label(layout: str, tmp_path) -> None:
    archive = make_synthetic_archive(tmp_path, layout=layout, num_train=203, num_test=37, seed=3)
    out = str(tmp_path / "out")
    manifest = prepare_data.run(
        prepare_data.PrepareDataConfig(source=str(archive.path), output_dir=out, num_shards=5)
    )
    assert manifest["source"]["layout"] == layout
    assert manifest["class_names"] == CLASS_NAMES
    for split, images, labels in [
        ("train", archive.train_images, archive.train_labels),
        ("test", archive.test_images, archive.test_labels),
    ]:
        x, y = data.load_arrays(out, split)
        assert x.dtype == np.uint8 and x.shape == images.shape and y.dtype == np.int64
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)
        ds_x, ds_y = next(iter(data.make_dataset(out, split, batch_size=1000)))
        np.testing.assert_array_equal(ds_x.numpy(), images)
        np.testing.assert_array_equal(ds_y.numpy(), labels)
    # Per-file counts in the manifest match the files.
    for shard in manifest["splits"]["train"]["shards"]:
        assert (
            len(data.read_record_file(os.path.join(out, shard["file"]))[1]) == shard["num_examples"]
        )


def test_label_subsets_are_balanced_images_of_train(
    tiny_prepared_data: str, tiny_synthetic_archive
) -> None:
    manifest = data.load_manifest(tiny_prepared_data)
    assert set(manifest["label_subsets"]) == {"0.01", "0.1"}
    x, y = data.load_arrays(tiny_prepared_data, "label_0.1")
    assert np.bincount(y, minlength=10).tolist() == [2] * 10  # 0.1 * 200 / 10 classes
    train = tiny_synthetic_archive.train_images.reshape(200, -1)
    # Every subset image is a training image with the same label.
    for image, label in zip(x.reshape(len(x), -1), y, strict=True):
        (match,) = np.flatnonzero((train == image).all(axis=1))
        assert tiny_synthetic_archive.train_labels[match] == label
    assert data.load_arrays(tiny_prepared_data, "label_0.01")[1].tolist().count(0) == 1


def test_make_dataset_shuffle_is_deterministic_and_reshuffles(tiny_prepared_data: str) -> None:
    def epochs(seed: int) -> list[list[int]]:
        ds = data.make_dataset(
            tiny_prepared_data, "train", shuffle=True, seed=seed, batch_size=200, repeat=True
        )
        it = iter(ds)
        return [next(it)[1].numpy().tolist() for _ in range(2)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    assert first == again
    assert first[0] != first[1]  # a new order each epoch
    assert first != other
    assert sorted(first[0]) == sorted(first[1])  # a permutation of the same examples


def test_make_dataset_input_context_partitions(tiny_prepared_data: str) -> None:
    all_images, all_labels = data.load_arrays(tiny_prepared_data, "train")
    keys = {img.tobytes() for img in all_images}
    for pipelines in (2, 5):  # 4 files: 2 -> whole files each, 5 -> every 5th record
        seen = []
        for pid in range(pipelines):
            ctx = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pid)
            seen += [
                img.numpy().tobytes()
                for img, _ in data.make_dataset(tiny_prepared_data, "train", input_context=ctx)
            ]
        assert len(seen) == len(all_labels) and set(seen) == keys


def test_max_examples_and_drop_remainder(tiny_prepared_data: str) -> None:
    x, y = data.load_arrays(tiny_prepared_data, "train")
    x30, y30 = data.load_arrays(tiny_prepared_data, "train", max_examples=30)
    np.testing.assert_array_equal(x30, x[:30])
    np.testing.assert_array_equal(y30, y[:30])
    batches = list(
        data.make_dataset(
            tiny_prepared_data, "train", max_examples=30, batch_size=8, drop_remainder=True
        )
    )
    assert [len(b[1]) for b in batches] == [8, 8, 8]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[:24])


def test_reader_falls_back_for_records_in_another_layout(tmp_path) -> None:
    image = np.arange(3072, dtype=np.uint8).reshape(32, 32, 3)
    path = str(tmp_path / "other.tfrecord")
    example = tf.train.Example(
        features=tf.train.Features(
            feature={  # label first, a large label: not our fixed template
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[300])),
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
            }
        )
    )
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example.SerializeToString())
    x, y = data.read_record_file(path)
    np.testing.assert_array_equal(x[0], image)
    assert y.tolist() == [300]


def test_reader_errors_name_the_problem(tiny_prepared_data: str, tmp_path) -> None:
    with pytest.raises(UserError, match="no manifest"):
        data.load_manifest(str(tmp_path))
    with pytest.raises(UserError, match="no split 'label_0.5'.*label_0.01"):
        data.record_files(tiny_prepared_data, "label_0.5")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_prepared_data, broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt manifest"):
        data.load_manifest(str(broken))
    with open(os.path.join(tiny_prepared_data, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["format_version"] = 99
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="format_version 99"):
        data.load_manifest(str(broken))
    manifest["format_version"] = 1
    (broken / "manifest.json").write_text(json.dumps(manifest))
    os.remove(broken / "test-00000-of-00001.tfrecord")
    with pytest.raises(UserError, match="test-00000-of-00001.tfrecord .*missing"):
        data.record_files(str(broken), "test")


def test_real_cifar_subset(real_prepared_data: str, real_cifar_archive) -> None:
    manifest = data.load_manifest(real_prepared_data)
    assert manifest["class_names"][0] == "airplane" and manifest["class_names"][-1] == "truck"
    assert len(manifest["class_names"]) == 10
    train, test = manifest["splits"]["train"], manifest["splits"]["test"]
    assert train["num_examples"] == sum(train["class_counts"]) == 5000
    assert test["class_counts"] == [100] * 10
    assert len(train["files"]) == 4 and len(test["files"]) == 1
    assert manifest["image_format"] == "raw_uint8" and manifest["image_shape"] == [32, 32, 3]
    for key, per_class in [("0.01", 5), ("0.1", 50)]:
        subset = manifest["label_subsets"][key]
        assert subset["class_counts"] == [per_class] * 10
        assert subset["num_examples"] == 10 * per_class
        assert len(subset["indices_sha256"]) == 64
        _, y = data.load_arrays(real_prepared_data, "label_" + key)
        assert np.bincount(y, minlength=10).tolist() == [per_class] * 10
    source = cifar.read_archive(str(real_cifar_archive))
    x, y = data.load_arrays(real_prepared_data, "train")
    np.testing.assert_array_equal(x, source.train_images)
    np.testing.assert_array_equal(y, source.train_labels)
    # Real photos, not noise: neighbouring pixels are strongly correlated.
    assert np.corrcoef(x[:200, :, :-1].ravel(), x[:200, :, 1:].ravel())[0, 1] > 0.8


def test_sampled_subset_spans_a_class_grouped_split(real_prepared_data: str) -> None:
    # The JPEG source stores the test split grouped by class: its first 100 images are
    # all one class, so a part of the split measured on must be a random sample.
    _, first = data.load_arrays(real_prepared_data, "test", max_examples=100)
    assert len(set(first.tolist())) == 1
    x, y = data.load_arrays(real_prepared_data, "test", max_examples=100, sample_seed=0)
    again_x, _ = data.load_arrays(real_prepared_data, "test", max_examples=100, sample_seed=0)
    assert len(y) == 100 and len(set(y.tolist())) == 10
    np.testing.assert_array_equal(x, again_x)
    all_x, _ = data.load_arrays(real_prepared_data, "test")
    assert {img.tobytes() for img in x} <= {img.tobytes() for img in all_x}


def test_restricted_unpickler_reads_numpy1_pickles_and_refuses_code() -> None:
    import pickle

    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    blob = pickle.dumps({b"data": array, b"labels": [1, 2, 3]}, protocol=2)
    numpy1 = blob.replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray"
    )  # as numpy 1 wrote it
    assert numpy1 != blob
    loaded = cifar.safe_unpickle("a.tar.gz", "m", numpy1)
    np.testing.assert_array_equal(loaded[b"data"], array)
    with pytest.raises(UserError, match="member m: .*refused to load global builtins.eval"):
        cifar.safe_unpickle("a.tar.gz", "m", b"cbuiltins\neval\n(S'1'\ntR.")
