"""A servable SavedModel of the encoder: encoded images in, embeddings out.

``export_saved_model(encoder, config, out_dir)`` writes ``out_dir/saved_model/``, a plain
TensorFlow SavedModel (Keras' ``ExportArchive``, the writer ``keras.layers.TFSMLayer``
reads back). It needs neither ``simclr`` nor Keras to run: ``tf.saved_model.load``,
``saved_model_cli run`` and TF Serving / Vertex AI's prebuilt TensorFlow containers load it.

Signatures (each also a function attribute of the loaded object, for ``TFSMLayer``):

- ``serving_default`` (= ``serve``): ``image_bytes`` tf.string [N] (JPEG, PNG, GIF, BMP
  or WebP; any size, each its own) -> ``embedding`` float32 [N, D] (L2-normalised
  encoder output, for cosine retrieval) and ``features`` float32 [N, D] (raw).
- ``serve_images``: ``images`` uint8 [N, H, W, 3] (one size per batch) -> the same.

Preprocessing inside both, the same as evaluation sees a stored picture
(``fit_to_training_size``): the shorter side brought to ``stored_size`` (aspect kept,
integer round-half-up as ``simclr.images.resize.stored_dimensions``; Lanczos down,
bicubic up, as ingest stores pictures; no-op when already there), rounded to uint8, a
centre crop of ``image_size`` x ``image_size`` (offsets as google-research/simclr
``tf2/data_util.py`` ``center_crop``: ``(d - c + 1) // 2``), then ``/ 255`` into the
encoder (``simclr.model.make_image_encoder``'s ``Rescaling``). ``stored_size`` defaults
to ``image_size`` for <= 32 px (CIFAR: the whole picture, no crop) and
``round(image_size / 0.875)`` above (SimCLR's 0.875 evaluation crop).

BatchNorm runs in inference mode in every signature: fine-tuning through ``TFSMLayer``
trains the weights and keeps the moving statistics fixed (Keras' transfer-learning
guide's advice for BatchNorm when fine-tuning).

``config.json`` beside ``saved_model.pb`` carries what a user needs to feed it:
``image_size``, ``stored_size``, ``stem``, ``encoder``, ``width_multiplier``,
``embedding_size`` (= ``feature_dim``), the signatures and their keys.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf

from simclr import storage
from simclr.errors import UserError
from simclr.images.resize import default_stored_size
from simclr.model import _for_export, make_image_encoder, resolve_stem

SAVED_MODEL_DIR = "saved_model"
CONFIG_FILE = "config.json"
SERVE = "serve"  # also exported as "serving_default"
SERVE_IMAGES = "serve_images"
BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
OUTPUTS = ("embedding", "features")
FORMAT = "simclr-saved-model"
FORMAT_VERSION = 1


def resized_dimensions(height, width, stored_size: int):
    """(new_height, new_width) int32 tensors: the shorter side at ``stored_size``.

    The tensor twin of ``simclr.images.resize.stored_dimensions`` (round half up, in
    integers; ties: a square's both sides).
    """
    h, w = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    s = tf.constant(stored_size, tf.int64)
    width_shorter = w <= h
    one = tf.constant(1, tf.int64)
    new_h = tf.where(width_shorter, tf.maximum(one, (2 * h * s + w) // (2 * w)), s)
    new_w = tf.where(width_shorter, s, tf.maximum(one, (2 * w * s + h) // (2 * h)))
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def fit_to_training_size(images, image_size: int, stored_size: int | None = None):
    """uint8 [N, H, W, 3] (one H, W) -> uint8 [N, image_size, image_size, 3].

    Resize (shorter side to ``stored_size``; a no-op when it already is), round to
    uint8, centre-crop ``image_size``. Evaluation of stored records (whose shorter
    side is ``stored_size``) is this function without its resize.
    """
    stored_size = int(stored_size or default_stored_size(image_size))
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    new_h, new_w = resized_dimensions(height, width, stored_size)

    def resize():
        down = tf.logical_or(new_h < height, new_w < width)
        size = tf.stack([new_h, new_w])
        pixels = tf.cond(
            down,
            lambda: tf.image.resize(images, size, method="lanczos3", antialias=True),
            lambda: tf.image.resize(images, size, method="bicubic"),
        )
        return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)

    same = tf.logical_and(tf.equal(new_h, height), tf.equal(new_w, width))
    fitted = tf.cond(same, lambda: tf.identity(images), resize)
    top = (new_h - image_size + 1) // 2
    left = (new_w - image_size + 1) // 2
    crop = fitted[:, top : top + image_size, left : left + image_size, :]
    return tf.ensure_shape(crop, [None, image_size, image_size, 3])


def decode_images(image_bytes, image_size: int, stored_size: int | None = None):
    """tf.string [N] of encoded pictures (each its own size) -> uint8 [N, S, S, 3]."""

    def one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        return fit_to_training_size(image[None], image_size, stored_size)[0]

    return tf.map_fn(
        one,
        image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
    )


def _uint8_encoder(encoder):
    """The uint8-in float32 encoder evaluation uses (``make_image_encoder``), export-ready."""

    spec = getattr(encoder, "simclr_spec", None)
    model = _for_export(encoder)
    if model.inputs[0].dtype != "uint8":
        model = make_image_encoder(model)
    model.simclr_spec = spec
    return model


def _input_size(model) -> int:
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3 or shape[0] is None:
        raise UserError(f"cannot export an encoder with input shape {shape}: need [S, S, 3]")
    return int(shape[0])


def saved_model_config(model, config: dict[str, Any]) -> dict[str, Any]:
    """config.json of the export: the encoder's facts (``config`` may add or override).

    Facts are looked up in ``config`` and then in ``config["pretrain"]`` (what pretrain
    passes to ``save_encoder``), so either form works.
    """

    nested = config.get("pretrain") if isinstance(config.get("pretrain"), dict) else {}

    def fact(key: str):
        return config.get(key) if config.get(key) is not None else nested.get(key)

    image_size = _input_size(model)
    given = fact("image_size")
    if given is not None and int(given) != image_size:
        raise UserError(
            f"config image_size {given} differs from the encoder's input size {image_size}"
        )
    feature_dim = int(model.outputs[0].shape[-1])
    stored_size = int(fact("stored_size") or default_stored_size(image_size))
    if stored_size < image_size:
        raise UserError(f"stored_size {stored_size} is below image_size {image_size}")
    spec = dict(getattr(model, "simclr_spec", None) or {})
    return {
        **spec,
        **{k: v for k, v in config.items() if v is not None},
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "image_size": image_size,
        "stored_size": stored_size,
        # the stem built, not the flag ("auto" is resolved by the rule the model used)
        "stem": resolve_stem(fact("stem") or spec.get("stem") or "auto", image_size),
        "encoder": fact("encoder") or spec.get("encoder") or model.name,
        "width_multiplier": fact("width_multiplier") or spec.get("width_multiplier"),
        "feature_dim": feature_dim,
        "embedding_size": feature_dim,
        "signatures": {
            "serving_default": {"inputs": {BYTES_INPUT: "string [N]"}, "outputs": list(OUTPUTS)},
            SERVE_IMAGES: {
                "inputs": {IMAGES_INPUT: "uint8 [N, H, W, 3]"},
                "outputs": list(OUTPUTS),
            },
        },
        "preprocessing": (
            f"decode; shorter side to {stored_size} (Lanczos down, bicubic up; none when "
            f"already there); round to uint8; centre crop {image_size}x{image_size}; / 255"
        ),
    }


def build_export_archive(encoder, image_size: int, stored_size: int):
    """A Keras ExportArchive with the two endpoints over ``encoder`` (uint8 in)."""

    def outputs(images):
        features = encoder(images, training=False)
        return {"embedding": tf.math.l2_normalize(features, axis=1), "features": features}

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint(
        SERVE,
        lambda image_bytes: outputs(decode_images(image_bytes, image_size, stored_size)),
        input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)],
    )
    archive.add_endpoint(
        SERVE_IMAGES,
        lambda images: outputs(fit_to_training_size(images, image_size, stored_size)),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_INPUT)],
    )
    return archive


def export_saved_model(encoder, config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Writes ``out_dir/saved_model/`` (local, gs:// or s3://); returns its config.json.

    ``encoder``: a float encoder from ``build_encoder`` or the uint8-in model
    ``load_encoder`` returns; ``config``: pretrain's encoder config (``image_size``,
    ``stem``, ``encoder``, ``width_multiplier``, ...; missing facts come from the
    model). Written to a staging directory and published with config.json last, so a
    reader that finds config.json finds a complete SavedModel; on any failure nothing
    is published.
    """
    model = _uint8_encoder(encoder)
    meta = saved_model_config(model, config)
    archive = build_export_archive(model, meta["image_size"], meta["stored_size"])
    target = storage.join(out_dir, SAVED_MODEL_DIR)
    with storage.atomic_dir(target, last=(CONFIG_FILE,)) as staging:
        archive.write_out(staging, verbose=False)
        meta["size_bytes"] = _dir_size(staging)
        storage.write_json(os.path.join(staging, CONFIG_FILE), meta)
    return meta


def _dir_size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def find_saved_model(model_dir: str) -> str:
    """The SavedModel directory in ``model_dir`` (itself, ``saved_model/`` or
    ``encoder/saved_model/``); UserError when there is none."""
    for candidate in (
        model_dir,
        storage.join(model_dir, SAVED_MODEL_DIR),
        storage.join(model_dir, "encoder", SAVED_MODEL_DIR),
    ):
        if storage.exists(storage.join(candidate, CONFIG_FILE)) and storage.exists(
            storage.join(candidate, "saved_model.pb")
        ):
            return candidate
    raise UserError(f"no SavedModel at {model_dir} (expected {SAVED_MODEL_DIR}/config.json)")


def load_saved_model(model_dir: str):
    """(loaded tf.saved_model object, config.json) of an export (gs:// and s3:// too)."""
    directory = find_saved_model(model_dir)
    config = storage.read_json(storage.join(directory, CONFIG_FILE))
    local = storage.localize_dir(directory) if storage.is_remote(directory) else directory
    return tf.saved_model.load(local), config
