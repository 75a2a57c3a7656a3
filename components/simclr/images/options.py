"""IngestOptions: every knob of an image ingest, with its default, help and range.

One field per knob (`metadata["help"]`: the flag's help text), validated in one place,
so the prepare_data task can derive its flags from these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from simclr.errors import UserError
from simclr.images.convert import IMAGE_FORMATS, default_image_format
from simclr.images.decode import DEFAULT_MAX_IMAGE_PIXELS
from simclr.images.parallel import available_cpus
from simclr.images.resize import default_stored_size

ON_BAD_IMAGE = ("skip", "fail")
AUTO = "auto"
MAX_SEED = 2**32 - 1  # scikit-learn's RandomState takes seeds in [0, 2**32)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class IngestOptions:
    image_size: int = field(
        metadata=_help("Training resolution in pixels (the crop size pretraining trains at).")
    )
    stored_size: int | None = field(
        default=None,
        metadata=_help(
            "Shorter side of the stored pictures (aspect kept). Default: image_size when "
            "<= 32, else round(image_size / 0.875) (224 -> 256), so evaluation can "
            "centre-crop 87.5% as SimCLR does."
        ),
    )
    image_format: str = field(
        default=AUTO,
        metadata=_help(
            "How records store pictures: jpeg, png, or auto (png when stored_size <= 64, "
            "else jpeg)."
        ),
    )
    jpeg_quality: int = field(default=95, metadata=_help("JPEG quality (1-100) when storing JPEG."))
    num_shards: int | None = field(
        default=None,
        metadata=_help(
            "Training shards. Default: about 128 MiB each, and 16 while each would still "
            "hold 10 MiB (tensorflow.org's TFRecord guide); the test split gets "
            "max(1, num_shards // 5)."
        ),
    )
    test_fraction: float = field(
        default=0.1,
        metadata=_help(
            "Fraction of the images held out as the test split (stratified by class when "
            "labelled); 0: no test split."
        ),
    )
    label_fractions: tuple[float, ...] = field(
        default=(0.01, 0.1),
        metadata=_help(
            "Class-balanced labelled subsets of the training split (labelled sources only)."
        ),
    )
    on_bad_image: str = field(
        default="skip",
        metadata=_help(
            "skip: leave bad files out, listed with their reason in manifest.json; fail: "
            "stop at the first bad file and publish nothing."
        ),
    )
    seed: int = field(
        default=0, metadata=_help("Seed of the test split, record order and subsets.")
    )
    max_image_pixels: int = field(
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metadata=_help(
            "Largest picture accepted, in pixels (width x height, also once stored): a "
            "guard against decompression bombs. Default: Pillow's own limit."
        ),
    )
    folder_labels: bool = field(
        default=True,
        metadata=_help(
            "Class subfolders of a folder source are labels (ImageFolder); false: every "
            "image under the folder is unlabelled."
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=_help(
            "Processes converting images. Default: the CPUs this process may use "
            "(affinity, capped by a cgroup/Kubernetes CPU limit)."
        ),
    )
    progress_every_s: float = field(
        default=10.0, metadata=_help("Seconds between progress lines in the log.")
    )

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
        if int(self.image_size) < 1:
            raise UserError(f"--image_size must be >= 1, got {self.image_size}")
        if self.stored_size is not None and int(self.stored_size) < self.image_size:
            raise UserError(
                f"--stored_size {self.stored_size} is below --image_size {self.image_size}: "
                "crops would be upscaled"
            )
        if self.image_format not in (AUTO, *IMAGE_FORMATS):
            raise UserError(
                f"--image_format must be one of {AUTO}, {', '.join(IMAGE_FORMATS)}; "
                f"got {self.image_format!r}"
            )
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise UserError(f"--jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.num_shards is not None and int(self.num_shards) < 1:
            raise UserError(f"--num_shards must be >= 1, got {self.num_shards}")
        if not 0 <= float(self.test_fraction) < 1:
            raise UserError(f"--test_fraction must be in [0, 1), got {self.test_fraction:g}")
        for fraction in self.label_fractions:
            if not 0 < float(fraction) <= 1:
                raise UserError(f"--label_fractions values must be in (0, 1], got {fraction:g}")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise UserError(f"--on_bad_image must be skip or fail, got {self.on_bad_image!r}")
        if not 0 <= int(self.seed) <= MAX_SEED:
            raise UserError(f"--seed must be in [0, {MAX_SEED}], got {self.seed}")
        if int(self.max_image_pixels) < 1:
            raise UserError(f"--max_image_pixels must be >= 1, got {self.max_image_pixels}")
        if self.workers is not None and int(self.workers) < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if float(self.progress_every_s) < 0:
            raise UserError(f"--progress_every_s must be >= 0, got {self.progress_every_s}")
