"""ResNet encoders (CIFAR or ImageNet stem), the SimCLR projection head, encoder export.

Architecture as google-research/simclr ``tf2/resnet.py``: with ``cifar_stem=True``
(3x3 stride-1 stem conv, no max-pool) for images of at most 32 px, else the ImageNet
stem (7x7 stride-2 conv, BatchNorm + ReLU, 3x3 stride-2 max-pool "SAME"), as
``tf2/model.py`` decides (``cifar_stem=image_size <= 32``); ``stem=`` overrides. Post-activation ("v1.5": the stride sits on
the 3x3 conv of a bottleneck), zero-initialised gamma on the last BatchNorm of each
residual block, explicit symmetric padding before strided convs, BatchNorm momentum
0.9 and epsilon 1e-5. Shortcuts are projections (1x1 conv + BN) where the shape
changes and identities otherwise (as in He et al.; for ResNet-50 the same as the
reference, which projects in the first block of every stage).

The graphs hold only built-in Keras layers, so saved ``.keras`` files load without
custom objects. Inputs are float32 [B, S, S, 3] in [0, 1] (S = image_size, 32 by
default), with no mean/std normalisation (as SimCLR).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import keras

from simclr import storage
from simclr.errors import UserError

ENCODERS = ("resnet18", "resnet34", "resnet50")
STEMS = ("auto", "cifar", "imagenet")
CIFAR_STEM_MAX_SIZE = 32  # tf2/model.py: cifar_stem = image_size <= 32
IMAGE_SHAPE = (32, 32, 3)
ENCODER_FILE = "encoder.keras"
CONFIG_FILE = "config.json"

_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
_STAGE_FILTERS = (64, 128, 256, 512)
# name -> (blocks per stage, bottleneck?)
_ARCHS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
}


def _channels(c: int, width_multiplier: float) -> int:
    return max(1, int(round(c * width_multiplier)))


class _Builder:
    """Creates uniquely and readably named layers for one encoder."""

    def __init__(self, prefix: str, sync_batchnorm: bool) -> None:
        self.prefix = prefix
        self.sync = sync_batchnorm

    def conv(self, x, filters: int, kernel: int, strides: int, name: str):
        if strides > 1:  # fixed symmetric padding, so the output does not depend on H
            pad = (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2
            x = keras.layers.ZeroPadding2D((pad, pad), name=f"{self.prefix}{name}_pad")(x)
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="valid" if strides > 1 else "same",
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(),
            name=f"{self.prefix}{name}",
        )(x)

    def bn(self, x, name: str, relu: bool = True, zero_gamma: bool = False):
        x = keras.layers.BatchNormalization(
            momentum=_BN_MOMENTUM,
            epsilon=_BN_EPSILON,
            gamma_initializer="zeros" if zero_gamma else "ones",
            synchronized=self.sync,
            name=f"{self.prefix}{name}",
        )(x)
        if relu:
            x = keras.layers.ReLU(name=f"{self.prefix}{name}_relu")(x)
        return x

    def shortcut(self, x, filters: int, strides: int, name: str):
        if strides == 1 and x.shape[-1] == filters:
            return x
        x = self.conv(x, filters, 1, strides, f"{name}_proj")
        return self.bn(x, f"{name}_proj_bn", relu=False)

    def basic_block(self, x, filters: int, strides: int, name: str):
        shortcut = self.shortcut(x, filters, strides, name)
        x = self.bn(self.conv(x, filters, 3, strides, f"{name}_conv1"), f"{name}_bn1")
        x = self.conv(x, filters, 3, 1, f"{name}_conv2")
        x = self.bn(x, f"{name}_bn2", relu=False, zero_gamma=True)
        x = keras.layers.Add(name=f"{self.prefix}{name}_add")([x, shortcut])
        return keras.layers.ReLU(name=f"{self.prefix}{name}_out")(x)

    def bottleneck_block(self, x, filters: int, strides: int, name: str):
        shortcut = self.shortcut(x, 4 * filters, strides, name)
        x = self.bn(self.conv(x, filters, 1, 1, f"{name}_conv1"), f"{name}_bn1")
        x = self.bn(self.conv(x, filters, 3, strides, f"{name}_conv2"), f"{name}_bn2")
        x = self.conv(x, 4 * filters, 1, 1, f"{name}_conv3")
        x = self.bn(x, f"{name}_bn3", relu=False, zero_gamma=True)
        x = keras.layers.Add(name=f"{self.prefix}{name}_add")([x, shortcut])
        return keras.layers.ReLU(name=f"{self.prefix}{name}_out")(x)


def resolve_stem(stem: str, image_size: int) -> str:
    """ "cifar" or "imagenet": `stem`, or for "auto" the official rule (CIFAR stem at <= 32 px)."""
    if stem not in STEMS:
        raise UserError(f"--stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem != "auto":
        return stem
    return "cifar" if int(image_size) <= CIFAR_STEM_MAX_SIZE else "imagenet"


def build_encoder(
    name: str = "resnet50",
    width_multiplier: float = 1.0,
    *,
    image_size: int = 32,
    stem: str = "auto",
    sync_batchnorm: bool = False,
    name_prefix: str | None = None,
) -> keras.Model:
    """Returns a ResNet encoder: float32 [B,S,S,3] in [0,1] -> [B, D] float32 (S = image_size).

    ``stem``: "cifar", "imagenet" or "auto" (`resolve_stem`); recorded, with image_size,
    in ``simclr_spec`` (and so in the saved encoder's config.json).
    D = 2048*w for resnet50 and 512*w for resnet18/34 (channels max(1, round(c*w))).
    ``sync_batchnorm`` synchronises BatchNorm statistics across replicas (set it
    when the strategy has more than one replica). ``name_prefix`` prefixes every
    layer name (and the model name), so two encoders can live in one model.
    The pooled output is float32 whatever the global dtype policy.
    """
    if name not in _ARCHS:
        raise UserError(f"--encoder must be one of {', '.join(ENCODERS)}, got {name!r}")
    if not width_multiplier > 0:
        raise UserError(f"--width_multiplier must be > 0, got {width_multiplier}")
    blocks, bottleneck = _ARCHS[name]
    prefix = name_prefix or ""
    b = _Builder(prefix, sync_batchnorm)

    if int(image_size) < 1:
        raise UserError(f"image_size must be >= 1, got {image_size}")
    stem = resolve_stem(stem, image_size)
    shape = (int(image_size), int(image_size), 3)
    inputs = keras.Input(shape=shape, dtype="float32", name=f"{prefix}images")
    if stem == "cifar":
        x = b.bn(b.conv(inputs, _channels(64, width_multiplier), 3, 1, "stem_conv"), "stem_bn")
    else:
        x = b.bn(b.conv(inputs, _channels(64, width_multiplier), 7, 2, "stem_conv"), "stem_bn")
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name=f"{prefix}stem_pool")(x)
    block = b.bottleneck_block if bottleneck else b.basic_block
    for stage, (n_blocks, filters) in enumerate(zip(blocks, _STAGE_FILTERS, strict=True), start=1):
        for i in range(n_blocks):
            strides = 2 if stage > 1 and i == 0 else 1
            x = block(
                x, _channels(filters, width_multiplier), strides, f"stage{stage}_block{i + 1}"
            )
    # float32 pooling: averages in full precision under mixed precision, and the
    # representation (and the losses downstream) stay float32.
    outputs = keras.layers.GlobalAveragePooling2D(dtype="float32", name=f"{prefix}pool")(x)
    model = keras.Model(inputs, outputs, name=f"{prefix}{name}")
    # Read by save_encoder for config.json (a plain attribute; not serialised).
    model.simclr_spec = {
        "encoder": name,
        "width_multiplier": float(width_multiplier),
        "image_size": int(image_size),
        "stem": stem,
    }
    return model


def build_projection_head(
    input_dim: int,
    *,
    hidden_dim: int | None = None,
    output_dim: int = 128,
    num_layers: int = 2,
    sync_batchnorm: bool = False,
    name: str = "projection_head",
) -> keras.Model:
    """Returns the SimCLR projection head g(.): [B, input_dim] -> [B, output_dim].

    As the reference's "nonlinear" head: ``num_layers - 1`` hidden layers of
    Dense (no bias) + BatchNorm + ReLU (width ``hidden_dim``, default input_dim),
    then Dense (no bias) + BatchNorm without centering (scale kept, as the
    reference). num_layers=2 is SimCLR v1, 3 is v2. Output float32.
    """
    if num_layers < 1:
        raise UserError(f"projection head needs num_layers >= 1, got {num_layers}")
    hidden_dim = hidden_dim or input_dim
    inputs = keras.Input(shape=(input_dim,), name=f"{name}_input")
    x = inputs
    for j in range(num_layers):
        last = j == num_layers - 1
        x = keras.layers.Dense(
            output_dim if last else hidden_dim,
            use_bias=False,  # the BatchNorm's beta plays the bias
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name=f"{name}_dense{j}",
        )(x)
        x = keras.layers.BatchNormalization(
            momentum=_BN_MOMENTUM,
            epsilon=_BN_EPSILON,
            center=not last,
            synchronized=sync_batchnorm,
            name=f"{name}_bn{j}",
        )(x)
        if not last:
            x = keras.layers.ReLU(name=f"{name}_relu{j}")(x)
    outputs = keras.layers.Activation("linear", dtype="float32", name=f"{name}_out")(x)
    return keras.Model(inputs, outputs, name=name)


def make_image_encoder(encoder: keras.Model) -> keras.Model:
    """Wraps ``encoder`` for export: uint8 [N,S,S,3] (its input size) -> representation."""
    shape = tuple(encoder.inputs[0].shape[1:])
    images = keras.Input(shape=shape, dtype="uint8", name="images_uint8")
    x = keras.layers.Rescaling(1.0 / 255.0, dtype="float32", name="to_unit_range")(images)
    outputs = encoder(x)
    return keras.Model(images, outputs, name="image_encoder")


def save_encoder(encoder: keras.Model, uri: str, *, config: dict[str, Any]) -> None:
    """Writes ``uri/encoder.keras`` (uint8 in) and ``uri/config.json``.

    ``encoder`` is a float encoder from ``build_encoder`` (or an already wrapped
    uint8 one). It is saved with unsynchronised BatchNorm and float32 layers
    (also when trained under mixed precision). config.json is
    ``{"encoder", "width_multiplier", "feature_dim", **config}`` (feature_dim from the
    model), written last, so its presence means the encoder is complete. The model
    is saved to a local temp dir, then published through ``simclr.storage``
    (atomic: temp name + rename locally, single upload on gs://).
    """
    model = _for_export(encoder)
    if model.inputs[0].dtype != "uint8":
        model = make_image_encoder(model)
    spec = dict(getattr(encoder, "simclr_spec", None) or {"encoder": encoder.name})
    meta = {"width_multiplier": None, **spec, **config}
    meta["feature_dim"] = int(model.outputs[0].shape[-1])
    with tempfile.TemporaryDirectory(prefix="simclr-encoder-") as tmp:
        local_model = os.path.join(tmp, ENCODER_FILE)
        model.save(local_model)
        storage.upload_file(local_model, storage.join(uri, ENCODER_FILE))
    storage.write_json(storage.join(uri, CONFIG_FILE), meta)


def load_encoder(uri: str) -> tuple[keras.Model, dict[str, Any]]:
    """Loads what ``save_encoder`` wrote: returns (uint8-in model, config dict).

    ``uri`` is pretrain's output dir or the ``encoder/`` inside it, local or gs://.
    Raises UserError if there is no readable encoder there.
    """
    for directory in (uri, storage.join(uri, "encoder")):
        if storage.exists(storage.join(directory, ENCODER_FILE)):
            return _load_from(directory)
    raise UserError(
        f"no encoder at {uri}: expected {ENCODER_FILE} in it or in its encoder/ subdirectory"
    )


def _load_from(directory: str) -> tuple[keras.Model, dict[str, Any]]:
    model_uri = storage.join(directory, ENCODER_FILE)
    config_uri = storage.join(directory, CONFIG_FILE)
    config = storage.read_json(config_uri) if storage.exists(config_uri) else {}
    with tempfile.TemporaryDirectory(prefix="simclr-encoder-") as tmp:
        local_model = model_uri
        if storage.is_remote(model_uri):
            local_model = os.path.join(tmp, ENCODER_FILE)
            storage.download_file(model_uri, local_model)
        try:
            model = keras.saving.load_model(local_model, compile=False)
        except Exception as e:  # corrupt or foreign file: one line for the user
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot load encoder {model_uri}: {reason}") from e
    return model, _trust_the_file(model, config, config_uri)


def _stem_filters(model: keras.Model) -> int | None:
    for layer in model.layers:
        if layer.name == "stem_conv":
            return int(layer.filters)
        if isinstance(layer, keras.Model) and (found := _stem_filters(layer)) is not None:
            return found
    return None


def _trust_the_file(model: keras.Model, config: dict[str, Any], config_uri: str) -> dict:
    """config.json corrected to what the encoder file really is (its feature size and,
    from the stem's 64 x width channels, its width), with a warning when they differ."""
    real = {"feature_dim": int(model.outputs[0].shape[-1])}
    stem = _stem_filters(model)
    claimed_width = config.get("width_multiplier")
    if stem is not None and claimed_width and _channels(64, float(claimed_width)) != stem:
        real["width_multiplier"] = stem / 64
    wrong = {k: (config[k], v) for k, v in real.items() if k in config and config[k] != v}
    if wrong:
        said = ", ".join(f"{k} {old} (the file: {new})" for k, (old, new) in wrong.items())
        print(f"warning: {config_uri} says {said}; using the encoder file's", file=sys.stderr)
    return {**config, **real}


def _for_export(model: keras.Model) -> keras.Model:
    """Returns ``model``, rebuilt with plain BatchNorm and float32 layers if needed.

    Synchronised BN only matters while training under a strategy, and a model
    trained under mixed precision keeps float32 weights, so the export computes in
    float32 (exact features for evaluation, fast on CPUs without bf16/fp16 kernels).
    """
    config = model.get_config()
    if not _export_config(config):
        return model
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def _export_config(node: Any) -> bool:
    """Edits a model config in place for export; True if anything changed."""
    changed = False
    if isinstance(node, dict):
        if node.get("class_name") == "BatchNormalization" and node["config"].get("synchronized"):
            node["config"]["synchronized"] = False
            changed = True
        if node.get("class_name") == "DTypePolicy" and node["config"].get("name") != "float32":
            node["config"]["name"] = "float32"
            changed = True
        for value in node.values():
            changed = _export_config(value) or changed
    elif isinstance(node, list):
        for value in node:
            changed = _export_config(value) or changed
    return changed
