"""The trained model: shared towers under one or two tasks.

Every kind is the same two-tower retrieval model; they differ in the query tower (user id, or
the recent movies for `sequential`) and in whether a rating head is trained beside it
(`multitask`). The towers live in towers.py, the tasks here.
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features as f
from components.model.towers import dense_stack


class RatingHead(tf.keras.Model):
  """Predicts a rating from a (query, candidate) embedding pair: an MLP over both.

  The output layer's bias starts at the mean training rating, so training fits the
  deviations from it. Ratings are not clipped here (the loss needs the raw value); the
  exported signature clips them to the rating scale.
  """

  def __init__(self, layer_sizes: Sequence[int], mean_rating: float, **kwargs):
    super().__init__(**kwargs)
    self.dense = dense_stack(list(layer_sizes) + [1], name='rating_dense')
    self.mean_rating = mean_rating

  def call(self, query: tf.Tensor, candidate: tf.Tensor) -> tf.Tensor:
    rating = self.dense(tf.concat([query, candidate], axis=1))
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
          labels=features[f.USER_RATING], predictions=self.rating_head(queries, candidates))
    return loss
