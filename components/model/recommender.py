"""The trained model: shared towers under one or two tasks.

Every kind is the same two-tower retrieval model; they differ in the query tower (user id, or
the recent movies for `sequential`) and in whether a rating head is trained beside it
(`multitask`). The towers live in towers.py, the tasks here.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features as f
from components.model.towers import dense_stack


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

    self.user_bias = bias(user_bias, 'user_bias')
    self.movie_bias = bias(movie_bias, 'movie_bias')

  def call(self, query: tf.Tensor, candidate: tf.Tensor, user_index: tf.Tensor,
           movie_index: tf.Tensor) -> tf.Tensor:
    rating = (self.dense(tf.concat([query, candidate], axis=1))
              + self.user_bias(user_index) + self.movie_bias(movie_index))
    return tf.squeeze(rating, axis=1) + self.mean_rating


class RecommenderModel(tfrs.Model):
  """Two towers trained with an in-batch softmax, plus an optional rating task.

  Args:
    query_tower: features -> [batch, d] query embeddings.
    candidate_tower: features -> [batch, d] movie embeddings.
    movie_sampling_probability: optional [num_movie_ids + oov] float tensor: how often each
      movie index appears in training. When given, the task subtracts log(probability) from
      each in-batch logit (logQ correction), so the learned score estimates the full softmax.
    temperature: divides the logits.
    rating_head: when given, also fits user_rating with a squared error (multitask).
    retrieval_weight, rating_weight: the two losses' weights; both are sums over the batch,
      so 1 and 1 weigh one example's softmax loss against its squared rating error.
  """

  def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model,
               movie_sampling_probability: Optional[tf.Tensor] = None,
               temperature: float = 1.0, rating_head: Optional[RatingHead] = None,
               retrieval_weight: float = 1.0, rating_weight: float = 1.0):
    super().__init__()
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.movie_sampling_probability = movie_sampling_probability
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

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    movie_index = features[f.MOVIE_ID_INDEX]
    queries = self.query_tower(features)
    candidates = self.candidate_tower(features)
    sampling_probability = None
    if self.movie_sampling_probability is not None:
      sampling_probability = tf.gather(self.movie_sampling_probability, movie_index)
    loss = self.retrieval_weight * self.retrieval_task(
        queries, candidates, candidate_sampling_probability=sampling_probability,
        candidate_ids=movie_index, compute_metrics=False)
    if self.rating_head is not None:
      loss += self.rating_weight * self.rating_task(
          labels=features[f.USER_RATING],
          predictions=self.rating_head(queries, candidates, features[f.USER_ID_INDEX],
                                       movie_index))
    return loss
