"""A whole split as numpy arrays (`load_arrays`): CIFAR-10 records parsed with numpy,
image datasets decoded to their centre `image_size` crop (evaluation's view)."""

from __future__ import annotations

import numpy as np

from simclr.data.manifest import is_image_dataset, load_manifest, local_data_dir
from simclr.data.records import read_record_file
from simclr.data.shards import record_files


def load_arrays(
    data_dir: str, split: str, max_examples: int | None = None, *, sample_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as numpy: (uint8 [N,32,32,3], int64 [N]).

    `max_examples` keeps the first N in file order, or, with `sample_seed`, a seeded
    random N (in file order). Use the seed for anything measured on a part of a split:
    a split may be stored grouped by class (the test split of the JPEG source is).
    """
    if sample_seed is not None:
        x, y = load_arrays(data_dir, split)
        if max_examples is not None and max_examples < len(y):
            rng = np.random.default_rng([int(sample_seed), sum(split.encode())])
            keep = np.sort(rng.choice(len(y), int(max_examples), replace=False))
            x, y = x[keep], y[keep]
        return x, y
    images, labels, total = [], [], 0
    local = local_data_dir(data_dir)
    manifest = load_manifest(local)
    for path in record_files(local, split):
        if is_image_dataset(manifest):
            # Decoding JPEG/PNG pictures needs TensorFlow: imported only for image datasets.
            from simclr.data.tfrecord import read_image_file

            x, y = read_image_file(path, manifest)
        else:
            x, y = read_record_file(path)
        images.append(x)
        labels.append(y)
        total += len(y)
        if max_examples is not None and total >= max_examples:
            break
    x, y = np.concatenate(images), np.concatenate(labels)
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
    return x, y
