"""Two-tower retrieval: learn query and candidate embeddings whose dot product ranks movies."""
from typing import Dict, Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features as f


class RetrievalModel(tfrs.Model):
  """Trains the towers with an in-batch softmax over the batch's movies.

  Args:
    query_tower: features -> [batch, d] query embeddings.
    candidate_tower: features -> [batch, d] movie embeddings.
    movie_sampling_probability: optional [num_movie_ids + oov] float tensor: how often each
      movie index appears in training. When given, the task subtracts log(probability) from
      each in-batch logit (logQ correction), so the learned score estimates the full softmax.
    temperature: divides the logits.
  """

  def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model,
               movie_sampling_probability: Optional[tf.Tensor] = None,
               temperature: float = 1.0):
    super().__init__()
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.movie_sampling_probability = movie_sampling_probability
    # Metrics are left to the Evaluator: in-training top-k over the catalogue is slow.
    self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    movie_index = features[f.MOVIE_ID_INDEX]
    sampling_probability = None
    if self.movie_sampling_probability is not None:
      sampling_probability = tf.gather(self.movie_sampling_probability, movie_index)
    return self.task(
        self.query_tower(features), self.candidate_tower(features),
        candidate_sampling_probability=sampling_probability,
        candidate_ids=movie_index, compute_metrics=False)
