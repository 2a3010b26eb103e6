"""The trained model: shared towers under one or two tasks.

Every kind is the same two-tower retrieval model; they differ in the query tower (user id, or
the recent movies for `sequential`) and in whether a rating head is trained beside it
(`multitask`). The towers live in towers.py, the tasks here.
"""
import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features as f
from components.model.towers import dense_stack
from components.model.warm_start import tag_id_table


class RatingHead(tf.keras.Model):
  """Predicts a rating: mean + user bias + movie bias + an MLP over the (query, candidate)
  embedding pair.

  The biases carry what a rating owes to who rates and what is rated (most of the variance on
  MovieLens). They start from their closed-form fit on the training ratings (biases.py, which
  shrinks them; no further penalty: one shrinks them back to zero within epochs) and the MLP's
  output from zero, so the head starts as the bias model and training fits the interaction
  from the shared towers. Ratings are not clipped here (the loss needs the raw
  value); the exported signatures clip them to the rating scale.

  Args:
    mean_rating, user_bias, movie_bias: the starting fit; user_bias [num user indices],
      movie_bias [num movie indices].
  """

  def __init__(self, layer_sizes: Sequence[int], mean_rating: float, user_bias: np.ndarray,
               movie_bias: np.ndarray, **kwargs):
    super().__init__(**kwargs)
    self.dense = dense_stack(list(layer_sizes) + [1], name='rating_dense',
                             last_initializer='zeros')
    self.mean_rating = mean_rating

    def bias(values, name):
      return tf.keras.layers.Embedding(
          len(values), 1, name=name,
          embeddings_initializer=tf.keras.initializers.Constant(values.reshape(-1, 1)))

    # Warm started by id; ids new to the vocabulary keep their row of the fit.
    self.user_bias = tag_id_table(bias(user_bias, 'user_bias'), f.USER_ID_VOCAB)
    self.movie_bias = tag_id_table(bias(movie_bias, 'movie_bias'), f.MOVIE_ID_VOCAB)

  def call(self, query: tf.Tensor, candidate: tf.Tensor, user_index: tf.Tensor,
           movie_index: tf.Tensor) -> tf.Tensor:
    rating = (self.dense(tf.concat([query, candidate], axis=1))
              + self.user_bias(user_index) + self.movie_bias(movie_index))
    return tf.squeeze(rating, axis=1) + self.mean_rating


@dataclasses.dataclass
class CatalogueNegatives:
  """Every catalogue movie as a negative (a full softmax), instead of the batch's other movies.

  Exact, and it needs no sampling correction, but the candidate tower embeds the whole
  catalogue at every step: right for MovieLens' thousands of movies, not for millions.

  Attributes:
    features: the catalogue's candidate-tower inputs, one row per movie.
    positions: [num movie indices] each movie index's row in features; -1 for movies outside
      the catalogue (never rated in training: an eval example's movie may be one).
  """
  features: Dict[str, tf.Tensor]
  positions: tf.Tensor


class RecommenderModel(tfrs.Model):
  """Two towers trained with a softmax over candidate movies, plus an optional rating task.

  Args:
    query_tower: features -> [batch, d] query embeddings.
    candidate_tower: features -> [batch, d] movie embeddings.
    movie_sampling_probability: optional [num_movie_ids + oov] float tensor: how often each
      movie index appears in training. When given, the task subtracts log(probability) from
      each in-batch logit (logQ correction), so the learned score estimates the full softmax.
    temperature: divides the logits.
    catalogue_negatives: when given, the softmax ranks each label against the whole catalogue
      (movie_sampling_probability is then not used); else against the batch's other movies.
    rating_head: when given, also fits user_rating with a squared error (multitask).
    every_position: in training, every position of each example's context is a query for
      the movie after it (query_tower.every_position, ContextTower's), against the whole
      catalogue (catalogue_negatives is then required); validation and the export still ask
      the last position alone.
    retrieval_weight, rating_weight: the two losses' weights; both are sums over the batch,
      so 1 and 1 weigh one example's softmax loss against its squared rating error.
  """

  def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model,
               movie_sampling_probability: Optional[tf.Tensor] = None,
               temperature: float = 1.0, rating_head: Optional[RatingHead] = None,
               retrieval_weight: float = 1.0, rating_weight: float = 1.0,
               catalogue_negatives: Optional[CatalogueNegatives] = None,
               every_position: bool = False):
    super().__init__()
    if every_position and catalogue_negatives is None:
      raise ValueError('every-position training ranks each position against the whole '
                       'catalogue: it needs catalogue negatives (a context movie has no '
                       'candidate features of its own in the batch)')
    self.every_position = every_position
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.movie_sampling_probability = movie_sampling_probability
    self.catalogue_negatives = catalogue_negatives
    self.temperature = temperature
    self.rating_head = rating_head
    self.retrieval_weight = retrieval_weight
    self.rating_weight = rating_weight
    # Metrics are left to the Evaluator: in-training top-k over the catalogue is slow.
    self.retrieval_task = tfrs.tasks.Retrieval(temperature=temperature,
                                               remove_accidental_hits=True)
    if rating_head is not None:
      self.rating_task = tfrs.tasks.Ranking(
          loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
          metrics=[tf.keras.metrics.RootMeanSquaredError(name='rating_rmse')])

  # Traced as written, without AutoGraph: nothing under it branches on a tensor in Python, and
  # AutoGraph's rewriting of every function it calls (Keras' layers included) took 20-40 s of
  # each Trainer's first step, against well under a second of tracing without it.
  @tf.autograph.experimental.do_not_convert
  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    if self.every_position and training:
      queries, next_movies, real = self.query_tower.every_position(features, training=True)
      return self.retrieval_weight * self._catalogue_loss(tf.boolean_mask(queries, real),
                                                          tf.boolean_mask(next_movies, real))
    movie_index = features[f.MOVIE_ID_INDEX]
    queries = self.query_tower(features, training=training)
    # The batch's own movies: the in-batch negatives, and the rating head's input.
    candidates = None
    if self.catalogue_negatives is None or self.rating_head is not None:
      candidates = self.candidate_tower(features)
    if self.catalogue_negatives is not None:
      retrieval_loss = self._catalogue_loss(queries, movie_index)
    else:
      retrieval_loss = self._in_batch_loss(queries, candidates, movie_index)
    loss = self.retrieval_weight * retrieval_loss
    if self.rating_head is not None:
      loss += self.rating_weight * self.rating_task(
          labels=features[f.USER_RATING],
          predictions=self.rating_head(queries, candidates, features[f.USER_ID_INDEX],
                                       movie_index))
    return loss

  def _catalogue_loss(self, queries: tf.Tensor, movie_index: tf.Tensor) -> tf.Tensor:
    """The full softmax. A row whose movie is outside the catalogue (in the eval split) cannot
    be ranked among it and adds nothing."""
    labels = tf.gather(self.catalogue_negatives.positions, movie_index)
    in_catalogue = labels >= 0
    catalogue = self.candidate_tower(self.catalogue_negatives.features)
    logits = tf.matmul(tf.boolean_mask(queries, in_catalogue), catalogue,
                       transpose_b=True) / self.temperature
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.boolean_mask(labels, in_catalogue), logits))

  def _in_batch_loss(self, queries: tf.Tensor, candidates: tf.Tensor,
                     movie_index: tf.Tensor) -> tf.Tensor:
    sampling_probability = None
    if self.movie_sampling_probability is not None:
      sampling_probability = tf.gather(self.movie_sampling_probability, movie_index)
    return self.retrieval_task(
        queries, candidates, candidate_sampling_probability=sampling_probability,
        candidate_ids=movie_index, compute_metrics=False)
