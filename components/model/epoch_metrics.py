"""What the Trainer measures on the validation split after each epoch, for early stopping and
TensorBoard: the catalogue top-k accuracy and the catalogue loss.

Training computes no top-k metric (TFRS's FactorizedTopK over the whole catalogue at every
step would cost more than the step), so the loss alone would show in TensorBoard. After each
epoch, CatalogueTopK ranks the whole catalogue for the first validation examples by brute
force and adds val_top_<k>_accuracy and val_catalogue_loss to the epoch's logs, where early
stopping reads them and Keras' TensorBoard callback (listed after it) writes them beside the
training loss. One pass of the query tower gives both: Keras' own validation pass (val_loss)
is not run, since it cost as much again (about half of an every-position epoch on ml-100k).
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf

from components import features as f

# Enough examples for a steady figure, few enough to cost a fraction of an epoch on any data.
MAX_EVAL_EXAMPLES = 10_000


class CatalogueTopK(tf.keras.callbacks.Callback):
  """After each epoch: the share of validation examples whose movie ranks in the top k of the
  whole catalogue (seen movies included, as the Evaluator's top_k_accuracy), for each k, and
  their mean cross-entropy against the whole catalogue (val_catalogue_loss: the softmax over
  every movie's score over the model's temperature; a movie outside the catalogue adds none).

  eval_dataset: batches of transformed features, read in order (the same examples each
  epoch), the first max_examples of them. catalogue_features: the catalogue as one batch of
  candidate-tower inputs; positions: [movie table size] each movie index's row in it (-1:
  outside the catalogue, never a hit).
  """

  def __init__(self, eval_dataset: tf.data.Dataset, catalogue_features: Dict[str, tf.Tensor],
               positions: tf.Tensor, ks: Sequence[int] = (10, 100),
               max_examples: int = MAX_EVAL_EXAMPLES):
    super().__init__()
    self.eval_dataset, self.ks, self.max_examples = eval_dataset, tuple(ks), max_examples
    self.catalogue_features, self.positions = catalogue_features, positions
    # In a graph (traced once per batch shape, without AutoGraph): run eagerly, op by op, the
    # pass over 10,000 examples took longer than the epoch it measures.
    self._measure = tf.function(self._ranks_and_losses, autograph=False, reduce_retracing=True)

  def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
    if logs is None:
      return
    candidates = self.model.candidate_tower(self.catalogue_features)  # [movies, dim]
    hits, seen, loss, ranked = {k: 0 for k in self.ks}, 0, 0.0, 0
    for batch in self.eval_dataset:
      ranks, losses = self._measure(batch, candidates)
      for k in self.ks:
        hits[k] += int(tf.reduce_sum(tf.cast(ranks < k, tf.int32)))
      seen += int(ranks.shape[0])
      loss += float(tf.reduce_sum(losses))
      ranked += int(losses.shape[0])
      if seen >= self.max_examples:
        break
    for k in self.ks:
      logs[f'val_top_{k}_accuracy'] = hits[k] / seen if seen else 0.0
    logs['val_catalogue_loss'] = loss / ranked if ranked else 0.0

  def _ranks_and_losses(self, batch: Dict[str, tf.Tensor], candidates: tf.Tensor) -> tuple:
    """([batch] each example's movie's rank among the catalogue (movies scored strictly
    higher; the catalogue's size for a movie outside it), [examples of catalogue movies] their
    cross-entropy against the whole catalogue)."""
    scores = tf.matmul(self.model.query_tower(batch, training=False), candidates,
                       transpose_b=True)  # [batch, movies]
    labels = tf.gather(self.positions, tf.reshape(batch[f.MOVIE_ID_INDEX], [-1]))
    in_catalogue = labels >= 0
    label_scores = tf.gather(scores, tf.maximum(labels, 0), axis=1, batch_dims=1)
    ranks = tf.reduce_sum(tf.cast(scores > label_scores[:, None], tf.int32), axis=1)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.boolean_mask(labels, in_catalogue),
        tf.boolean_mask(scores, in_catalogue) / getattr(self.model, 'temperature', 1.0))
    return tf.where(in_catalogue, ranks, tf.shape(scores)[1]), losses
