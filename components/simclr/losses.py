"""NT-Xent, the SimCLR contrastive loss, with global-batch negatives.

Follows the SimCLR paper (arXiv 2002.05709, eq. 1) and google-research/simclr
``tf2/objective.py``. One difference from the reference, where the two disagree:
the reference returns ``loss_a + loss_b`` (the sum of the means over the two views,
i.e. twice the paper's value); here, as in the paper, the loss is the mean over all
2N anchors.

Inside a ``tf.distribute`` replica context with more than one replica, the other
replicas' projections are gathered (``ReplicaContext.all_gather``, whose gradient is
an all-reduce-sum of the upstream gradients sliced back to each replica, so it is
exact) and used as negatives. Each replica returns the mean over its own 2n anchors,
so with equal per-replica batches:

* the mean over replicas of the per-replica loss equals the single-device loss on
  the same global batch, and
* gradients of ``loss / num_replicas_in_sync`` summed across replicas (what Keras
  optimisers do in ``apply_gradients``) equal the single-device gradients.

Nothing here assumes a single worker: the same code runs under MirroredStrategy,
MultiWorkerMirroredStrategy and TPUStrategy.
"""

from __future__ import annotations

import tensorflow as tf

# Added to the logits of an anchor with itself so it drops out of the softmax. A
# large finite number, not -inf (inf - inf would give NaN in the softmax), and the
# logits are float32 whatever the input dtype, so it cannot overflow.
LARGE_NUM = 1e9
# google-research/simclr optimises loss_a + loss_b, the sum of the two views' means:
# twice `nt_xent_loss` (the paper's mean over the 2N anchors). Its learning rate (1.0 at
# batch 256, linear scaling) and weight decay 1e-6 were tuned at that scale (under LARS
# the gradient's size sets the weight decay's relative weight, and the steps of the
# layers LARS does not adapt), so pretraining minimises OBJECTIVE_SCALE * nt_xent_loss.
OBJECTIVE_SCALE = 2.0


def nt_xent_loss(z_a: tf.Tensor, z_b: tf.Tensor, temperature: float = 0.5) -> tf.Tensor:
    """Returns the NT-Xent loss (scalar float32) of the projections of two views.

    Args:
      z_a, z_b: [n, d] projections of the two views of the same n images (row i of
        each comes from image i); any float dtype, not yet normalised.
      temperature: the softmax temperature tau (> 0).

    Each of the 2n anchors has one positive (the other view of its image) and 2N-2
    negatives (both views of every other image of the global batch, N = global batch
    size; N = n outside a multi-replica context).
    """
    loss, _ = nt_xent_loss_and_accuracy(z_a, z_b, temperature)
    return loss


def nt_xent_loss_and_accuracy(
    z_a: tf.Tensor, z_b: tf.Tensor, temperature: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns ``(loss, top1)``: the NT-Xent loss and the contrastive accuracy.

    ``top1`` is the fraction of this replica's 2n anchors whose positive has the
    highest similarity among the 2N-1 candidates (float32 scalar, no gradient).
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z_a = tf.math.l2_normalize(tf.cast(z_a, tf.float32), axis=1)
    z_b = tf.math.l2_normalize(tf.cast(z_b, tf.float32), axis=1)
    all_a, all_b, offset = _gather_global_batch(z_a, z_b)

    # Global index of each local anchor's own image: its positive in the other view,
    # and itself (masked out) in the same view.
    positives = offset + tf.range(tf.shape(z_a)[0])
    self_mask = tf.one_hot(positives, tf.shape(all_a)[0], dtype=tf.float32)
    inv_t = 1.0 / tf.cast(temperature, tf.float32)

    logits_aa = tf.matmul(z_a, all_a, transpose_b=True) * inv_t - self_mask * LARGE_NUM
    logits_bb = tf.matmul(z_b, all_b, transpose_b=True) * inv_t - self_mask * LARGE_NUM
    logits_ab = tf.matmul(z_a, all_b, transpose_b=True) * inv_t
    logits_ba = tf.matmul(z_b, all_a, transpose_b=True) * inv_t
    # Rows: the 2n local anchors; columns: [other view | same view] of the global
    # batch, so the positive sits at column `positives` in both halves of the rows.
    logits = tf.concat(
        [tf.concat([logits_ab, logits_aa], 1), tf.concat([logits_ba, logits_bb], 1)], 0
    )
    labels = tf.concat([positives, positives], 0)

    per_anchor = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    loss = tf.reduce_mean(per_anchor)
    hits = tf.equal(tf.argmax(logits, axis=1, output_type=labels.dtype), labels)
    accuracy = tf.reduce_mean(tf.cast(hits, tf.float32))
    return loss, accuracy


def _gather_global_batch(z_a: tf.Tensor, z_b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns (all z_a, all z_b, offset of this replica's rows in them)."""
    ctx = tf.distribute.get_replica_context()  # None in a cross-replica context
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return z_a, z_b, tf.constant(0, tf.int32)
    all_a, all_b = ctx.all_gather([z_a, z_b], axis=0)
    # Offsets from the gathered sizes, so uneven per-replica batches work too. Sent
    # as float32 (exact below 2**24): int32 collectives are awkward on GPUs, where
    # TensorFlow keeps int32 tensors in host memory.
    local_size = tf.cast(tf.reshape(tf.shape(z_a)[0], [1]), tf.float32)
    sizes = ctx.all_gather(local_size, axis=0)
    offset = tf.cast(tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group]), tf.int32)
    return all_a, all_b, offset
