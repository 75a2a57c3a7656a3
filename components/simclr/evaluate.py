"""Evaluation protocols for learned representations: kNN, linear probe, fine-tuning.

All protocols take a *uint8-in* Keras model (``simclr.model.load_encoder`` or
``make_image_encoder(build_encoder(...))``: uint8 [N,32,32,3] -> [N, D]) and numpy
arrays, so they run the same for the pretrained encoder and its random-init baseline.
Their names and hyper-parameters (``PROTOCOLS``, ``EvalOptions``) are in the
TensorFlow-free ``simclr.eval_options``.

- kNN (Wu et al. 2018, as in the SimCLR/MoCo CIFAR monitors): L2-normalised features,
  cosine similarity, the k=200 nearest train features vote with weight exp(sim / 0.1).
- Linear probe: frozen encoder, features cached once (inference mode, so neither the
  weights nor the BatchNorm statistics can change), standardised, multinomial logistic
  regression by L-BFGS (scikit-learn); the L2 strength is picked on a held-out 20% of
  train from a small grid, then refit on all of train.
- Fine-tuning: a fresh copy of the encoder + a zero-initialised linear head, Nesterov
  SGD with a smaller learning rate for the encoder, cosine decay, pad-4 crop + flip,
  BatchNorm in training mode (batch statistics, moving averages updated on the copy;
  the SimCLR paper's choice). The caller passes a factory so the model it keeps (and
  the file on disk) is never touched.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from simclr.errors import UserError
from simclr.eval_options import PROTOCOLS, EvalOptions

_log = logging.getLogger(__name__)


@dataclass
class EvalData:
    """The arrays the protocols read; labels are int64 in [0, len(class_names))."""

    class_names: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    label_subsets: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class EncoderResult:
    """What evaluating one encoder produced."""

    metrics: dict[str, float]
    predictions: dict[str, np.ndarray]  # protocol -> predicted test class (knn, linear)
    test_features: np.ndarray | None  # frozen features of the test split (for plots)
    details: dict[str, float] = field(default_factory=dict)  # e.g. the chosen L2
    train_features: np.ndarray | None = None  # frozen features of train (the gallery's bank)


# --------------------------------------------------------------------------- features


def extract_features(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Frozen features float32 [N, D]; the model runs in inference mode only."""
    if len(images) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    # predict() runs training=False (BatchNorm uses its moving statistics, updates none)
    # and keeps one compiled function per model.
    bad_weights = [v.path for v in model.weights if not np.isfinite(np.asarray(v)).all()]
    if bad_weights:
        raise UserError(
            f"the encoder holds non-finite weights ({len(bad_weights)} arrays, e.g. "
            f"{bad_weights[0]}): its training diverged"
        )
    features = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float32)
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features).all(axis=1)).sum())
        raise UserError(
            f"the encoder gives non-finite features for {bad} of {len(features)} images "
            "(its weights diverged)"
        )
    return features


def crop_flip(images, seed: int | Sequence[int], padding: int = 4):
    """Random pad-and-crop (reflect padding) and horizontal flip, per image, uint8 in/out.

    The standard CIFAR supervised augmentation; a pure function of ``seed`` and
    vectorised over the batch (gathers, no per-image loop).
    """
    images = tf.convert_to_tensor(images)
    seed = tf.convert_to_tensor(seed if not isinstance(seed, int) else (seed, 0), tf.int32)
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], "REFLECT")
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed=seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform([batch], seed=seed + [1, 1]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)


# --------------------------------------------------------------------------- metrics


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the k highest scores."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1))) if len(labels) else 0.0


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C]: rows are the true class, columns the predicted one."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float | None]:
    """Recall of each class (None for a class absent from the test set)."""
    totals = matrix.sum(axis=1)
    return [float(matrix[i, i] / t) if t else None for i, t in enumerate(totals)]


# --------------------------------------------------------------------------- kNN


def l2_normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def knn_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    num_classes: int,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 512,
) -> np.ndarray:
    """Weighted kNN class scores float32 [N_test, C] (cosine similarity, exp(sim/T) votes)."""
    train = l2_normalize(train_features.astype(np.float32))
    test = l2_normalize(test_features.astype(np.float32))
    k = min(k, len(train))
    out = np.zeros((len(test), num_classes), np.float32)
    for start in range(0, len(test), chunk_size):  # chunked: sims are [chunk, N_train]
        sims = test[start : start + chunk_size] @ train.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(sims, idx, axis=1) / temperature)
        votes = np.zeros((len(sims), num_classes), np.float32)
        np.add.at(votes, (np.arange(len(sims))[:, None], train_labels[idx]), weights)
        out[start : start + chunk_size] = votes
    return out


# --------------------------------------------------------------------------- linear


@dataclass
class LinearProbe:
    scores: np.ndarray  # class probabilities on the test features
    c: float  # scikit-learn's inverse L2 strength that was picked
    validation_top1: dict[float, float]  # C -> held-out top-1 (empty: fixed choice)


def blas_threads(size: int):
    """A thread-pool limit for scikit-learn/BLAS work on an array of ``size`` elements.

    Small problems run single-threaded: OpenMP/OpenBLAS workers spin-wait, and on busy
    cores that made a 2000x64 logistic regression ~50x slower than one thread.
    """
    return threadpool_limits(limits=1 if size < 20_000_000 else None)


def _fit_logreg(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    with blas_threads(x.size):
        return LogisticRegression(C=c, max_iter=1000, tol=1e-4, random_state=seed).fit(x, y)


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    *,
    c_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0),
    seed: int = 0,
) -> LinearProbe:
    """Multinomial logistic regression (L-BFGS) on standardised frozen features.

    C is picked on a held-out 20% of train (stratified when every class allows it),
    then the probe is refit on all of train. With under 50 train examples there is
    nothing to hold out and the middle of the grid is used.
    """
    if len(np.unique(train_labels)) < 2:
        raise UserError(
            "the linear probe needs train examples of at least 2 classes "
            "(raise --max_train_examples)"
        )
    grid = sorted(c_grid)
    scaler = StandardScaler().fit(train_features)
    x_train, x_test = scaler.transform(train_features), scaler.transform(test_features)
    validation: dict[float, float] = {}
    best_c = grid[len(grid) // 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a near-converged probe is fine
        if len(grid) > 1 and len(train_labels) >= 50:
            counts = np.bincount(train_labels)
            stratify = train_labels if counts[counts > 0].min() >= 2 else None
            x_fit, x_val, y_fit, y_val = train_test_split(
                x_train, train_labels, test_size=0.2, random_state=seed, stratify=stratify
            )
            for c in grid:
                validation[c] = float(
                    np.mean(_fit_logreg(x_fit, y_fit, c, seed).predict(x_val) == y_val)
                )
            best_c = max(grid, key=lambda c: (validation[c], -c))  # ties: stronger L2
        probe = _fit_logreg(x_train, train_labels, best_c, seed)
    return LinearProbe(scores=_full_scores(probe, x_test), c=best_c, validation_top1=validation)


def _full_scores(probe, x: np.ndarray) -> np.ndarray:
    """predict_proba indexed by class id (columns for classes unseen in train stay 0)."""
    proba = probe.predict_proba(x)
    num = int(max(probe.classes_.max() + 1, 1))
    out = np.zeros((len(x), num), np.float32)
    out[:, probe.classes_] = proba
    return out


# --------------------------------------------------------------------------- fine-tune


def finetune(
    make_model: Callable[[], object],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    num_classes: int,
    options: EvalOptions,
) -> np.ndarray:
    """Fine-tunes a fresh encoder copy + linear head; returns test logits [N_test, C].

    ``make_model`` must return a new uint8-in encoder each call (it is trained here).
    """
    keras.utils.set_random_seed(options.seed)
    encoder = make_model()
    encoder.trainable = True
    head = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="finetune_head")
    inputs = keras.Input(encoder.inputs[0].shape[1:], dtype="uint8")
    model = keras.Model(inputs, head(encoder(inputs)))

    batch_size = max(1, min(options.finetune_batch_size, len(train_images)))
    steps_per_epoch = math.ceil(len(train_images) / batch_size)
    total_steps = max(1, options.finetune_epochs * steps_per_epoch)

    def sgd(lr: float):
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps)
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)

    opt_encoder = sgd(options.finetune_encoder_learning_rate)
    opt_head = sgd(options.finetune_learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    enc_vars, head_vars = encoder.trainable_variables, head.trainable_variables

    @tf.function
    def train_step(images, labels, step):
        if options.finetune_augment:
            images = crop_flip(images, tf.stack([step, options.seed]))
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))  # BN: batch statistics
        grads = tape.gradient(loss, enc_vars + head_vars)
        opt_encoder.apply_gradients(zip(grads[: len(enc_vars)], enc_vars, strict=True))
        opt_head.apply_gradients(zip(grads[len(enc_vars) :], head_vars, strict=True))
        return loss

    dataset = (
        tf.data.Dataset.from_tensor_slices((train_images, train_labels))
        .shuffle(len(train_images), seed=options.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .take(total_steps)
    )
    for step, (images, labels) in enumerate(dataset):
        loss = train_step(images, labels, tf.constant(step, tf.int32))
        if (step + 1) % steps_per_epoch == 0:  # progress once per epoch
            _log.info(
                "fine-tune on %d images: epoch %d/%d, loss %.4f",
                len(train_images),
                (step + 1) // steps_per_epoch,
                options.finetune_epochs,
                float(loss),
            )
    return extract_features(model, test_images, options.batch_size)


# --------------------------------------------------------------------------- driver


def evaluate_encoder(
    make_model: Callable[[], object],
    data: EvalData,
    protocols: Sequence[str],
    options: EvalOptions,
    *,
    label_fractions: Sequence[str] = (),
    frozen_model: object | None = None,
) -> EncoderResult:
    """Runs ``protocols`` on the encoder ``make_model()`` returns; metrics are fractions.

    kNN and linear share one frozen model (``frozen_model``, else ``make_model()``;
    only run in inference mode) and one feature pass; each fine-tuning run gets its
    own fresh ``make_model()``.
    """
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise UserError(
            f"--protocols: unknown {', '.join(unknown)} (choose from {', '.join(PROTOCOLS)})"
        )
    metrics: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {}
    details: dict[str, float] = {}
    test_features = train_features = None
    num_classes, y_test = data.num_classes, data.test_labels

    if "knn" in protocols or "linear" in protocols:
        frozen = frozen_model if frozen_model is not None else make_model()
        train_features = extract_features(frozen, data.train_images, options.batch_size)
        test_features = extract_features(frozen, data.test_images, options.batch_size)
        if "knn" in protocols:
            scores = knn_scores(
                train_features,
                data.train_labels,
                test_features,
                num_classes,
                k=options.knn_k,
                temperature=options.knn_temperature,
            )
            _add_scores(metrics, predictions, "knn", scores, y_test, top5=True)
        if "linear" in protocols:
            x, y = _augmented_train_features(frozen, data, train_features, options)
            probe = linear_probe(
                x, y, test_features, c_grid=options.linear_c_grid, seed=options.seed
            )
            scores = _pad_classes(probe.scores, num_classes)
            _add_scores(metrics, predictions, "linear", scores, y_test, top5=True)
            details["linear_c"] = probe.c
        del frozen

    if "finetune" in protocols:
        for key in label_fractions:
            images, labels = data.label_subsets[key]
            logits = finetune(make_model, images, labels, data.test_images, num_classes, options)
            _add_scores(metrics, predictions, f"finetune_{key}", logits, y_test, top5=False)
            details[f"finetune_num_train_{key}"] = len(labels)
    return EncoderResult(metrics, predictions, test_features, details, train_features)


def _add_scores(metrics, predictions, name, scores, labels, *, top5: bool) -> None:
    """Adds <name>_top1 (finetune_<key> -> finetune_top1_<key>) and the predictions."""
    top1 = (
        f"finetune_top1_{name[len('finetune_') :]}"
        if name.startswith("finetune_")
        else f"{name}_top1"
    )
    metrics[top1] = topk_accuracy(scores, labels, 1)
    if top5:
        metrics[f"{name}_top5"] = topk_accuracy(scores, labels, 5)
    predictions[name] = np.argmax(scores, axis=1)


def _pad_classes(scores: np.ndarray, num_classes: int) -> np.ndarray:
    if scores.shape[1] >= num_classes:
        return scores
    return np.pad(scores, ((0, 0), (0, num_classes - scores.shape[1])))


def _augmented_train_features(model, data: EvalData, features: np.ndarray, options: EvalOptions):
    """Train features plus ``linear_augment_copies`` crop+flip views (still frozen)."""
    xs, ys = [features], [data.train_labels]
    for copy in range(options.linear_augment_copies):
        views = np.concatenate(
            [
                crop_flip(
                    data.train_images[i : i + 4096], (options.seed, 1000 + copy * 100_000 + i)
                ).numpy()
                for i in range(0, len(data.train_images), 4096)
            ]
        )
        xs.append(extract_features(model, views, options.batch_size))
        ys.append(data.train_labels)
    return np.concatenate(xs), np.concatenate(ys)
