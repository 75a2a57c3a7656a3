"""IngestOptions: every knob of an image ingest, with its default, help and range.

One `simclr.knobs.knob` per setting (its default, help and rule), validated by
`knobs.check`, so the prepare_data task derives its image flags from these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simclr import knobs
from simclr.errors import UserError
from simclr.images.convert import IMAGE_FORMATS, default_image_format
from simclr.images.decode import DEFAULT_MAX_IMAGE_PIXELS
from simclr.images.parallel import available_cpus
from simclr.images.resize import default_stored_size
from simclr.knobs import knob

ON_BAD_IMAGE = ("skip", "fail")
AUTO = "auto"
MAX_SEED = 2**32 - 1  # scikit-learn's RandomState takes seeds in [0, 2**32)


@dataclass(frozen=True)
class IngestOptions:
    image_size: int = knob(
        help="Training resolution in pixels (the crop size pretraining trains at).", at_least=1
    )
    stored_size: int | None = knob(
        None,
        "Shorter side of the stored pictures (aspect kept). Default: image_size when <= 32, "
        "else round(image_size / 0.875) (224 -> 256), so evaluation can centre-crop 87.5% "
        "as SimCLR does.",
        at_least=1,
    )
    image_format: str = knob(
        AUTO,
        "How records store pictures: jpeg, png, or auto (png when stored_size <= 64, else jpeg).",
        choices=(AUTO, *IMAGE_FORMATS),
    )
    jpeg_quality: int = knob(95, "JPEG quality (1-100) when storing JPEG.", at_least=1, at_most=100)
    num_shards: int | None = knob(
        None,
        "Training shards. Default: about 128 MiB each, and 16 while each would still hold "
        "10 MiB (tensorflow.org's TFRecord guide); the test split gets max(1, num_shards // 5).",
        at_least=1,
    )
    test_fraction: float = knob(
        0.1,
        "Fraction of the images held out as the test split (stratified by class when "
        "labelled); 0: no test split.",
        at_least=0.0,
        below=1.0,
    )
    label_fractions: tuple[float, ...] = knob(
        (0.01, 0.1),
        "Class-balanced labelled subsets of the training split (labelled sources only).",
        above=0.0,
        at_most=1.0,
        empty_ok=True,
    )
    on_bad_image: str = knob(
        "skip",
        "skip: leave bad files out, listed with their reason in manifest.json; fail: stop at "
        "the first bad file and publish nothing.",
        choices=ON_BAD_IMAGE,
    )
    seed: int = knob(
        0, "Seed of the test split, record order and subsets.", at_least=0, at_most=MAX_SEED
    )
    max_image_pixels: int = knob(
        DEFAULT_MAX_IMAGE_PIXELS,
        "Largest picture accepted, in pixels (width x height, also once stored): a guard "
        "against decompression bombs. Default: Pillow's own limit.",
        at_least=1,
    )
    folder_labels: bool = knob(
        True,
        "Class subfolders of a folder source are labels (ImageFolder); false: every image "
        "under the folder is unlabelled.",
    )
    workers: int | None = knob(
        None,
        "Processes converting images. Default: the CPUs this process may use (affinity, "
        "capped by a cgroup/Kubernetes CPU limit).",
        at_least=1,
    )
    progress_every_s: float = knob(10.0, "Seconds between progress lines in the log.", at_least=0.0)

    def resolved(self) -> IngestOptions:
        """A validated copy with every default filled in."""
        self.validate()
        stored = self.stored_size or default_stored_size(self.image_size)
        fmt = default_image_format(stored) if self.image_format == AUTO else self.image_format
        return dataclasses.replace(
            self,
            stored_size=stored,
            image_format=fmt,
            workers=self.workers or available_cpus(),
            label_fractions=tuple(sorted({float(f) for f in self.label_fractions})),
        )

    def validate(self) -> None:
        """UserError naming the flag of the first bad value."""
        knobs.check(self)
        if self.stored_size is not None and int(self.stored_size) < self.image_size:
            raise UserError(
                f"--stored_size {self.stored_size} is below --image_size {self.image_size}: "
                "crops would be upscaled"
            )
