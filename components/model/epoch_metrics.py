"""What the Trainer measures after each epoch, for TensorBoard: the catalogue top-k accuracy.

Training computes no top-k metric (TFRS's FactorizedTopK over the whole catalogue at every
step would cost more than the step), so the loss alone would show in TensorBoard. After each
epoch, CatalogueTopK ranks the whole catalogue for the first eval examples by brute force and
adds val_top_<k>_accuracy to the epoch's logs, where Keras' TensorBoard callback (listed after
it) writes them beside the losses.
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf

from components import features as f

# Enough examples for a steady figure, few enough to cost a fraction of an epoch on any data.
MAX_EVAL_EXAMPLES = 10_000


class CatalogueTopK(tf.keras.callbacks.Callback):
  """After each epoch: the share of eval examples whose movie ranks in the top k of the whole
  catalogue (seen movies included, as the Evaluator's top_k_accuracy), for each k.

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

  def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
    if logs is None:
      return
    candidates = self.model.candidate_tower(self.catalogue_features)  # [movies, dim]
    hits, seen = {k: 0 for k in self.ks}, 0
    for batch in self.eval_dataset:
      ranks = self._ranks(batch, candidates)
      for k in self.ks:
        hits[k] += int(tf.reduce_sum(tf.cast(ranks < k, tf.int32)))
      seen += int(ranks.shape[0])
      if seen >= self.max_examples:
        break
    for k in self.ks:
      logs[f'val_top_{k}_accuracy'] = hits[k] / seen if seen else 0.0

  def _ranks(self, batch: Dict[str, tf.Tensor], candidates: tf.Tensor) -> tf.Tensor:
    """[batch] each example's movie's rank among the catalogue (movies scored strictly
    higher); the catalogue's size for a movie outside it."""
    scores = tf.matmul(self.model.query_tower(batch, training=False), candidates,
                       transpose_b=True)  # [batch, movies]
    labels = tf.gather(self.positions, tf.reshape(batch[f.MOVIE_ID_INDEX], [-1]))
    label_scores = tf.gather(scores, tf.maximum(labels, 0), axis=1, batch_dims=1)
    ranks = tf.reduce_sum(tf.cast(scores > label_scores[:, None], tf.int32), axis=1)
    return tf.where(labels >= 0, ranks, tf.shape(scores)[1])
