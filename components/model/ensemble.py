"""Several separately trained models served as one.

Each member is the configured model trained on its own seed (its starting weights and the
order of its training batches); the ensemble scores a movie by the sum of the members' scores.
That sum is itself a dot product, of the members' embeddings side by side, so the export, the
ScaNN index and the serving signatures take an ensemble as they take one model. Members
trained together in one model, on the same batches, gained nothing on MovieLens: most of what
an ensemble averages out comes from the order of the batches (docs/benchmarks.md).
"""
import dataclasses
from typing import Dict, Optional, Sequence

import tensorflow as tf

from components.model.recommender import RecommenderModel


class EnsembleTower(tf.keras.Model):
  """The members' embeddings of the same input, side by side: [batch, sum of their sizes]."""

  def __init__(self, members: Sequence[tf.keras.Model], **kwargs):
    super().__init__(**kwargs)
    self.members = list(members)

  def call(self, features: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    return tf.concat([member(features, training=training) for member in self.members], axis=1)


class EnsembleRatingHead(tf.keras.Model):
  """The mean of the members' rating heads, each given its own member's embeddings (members
  share a config, so each holds an equal share of the side-by-side embeddings)."""

  def __init__(self, members: Sequence[tf.keras.Model], **kwargs):
    super().__init__(**kwargs)
    self.members = list(members)

  def call(self, query: tf.Tensor, candidate: tf.Tensor, user_index: tf.Tensor,
           movie_index: tf.Tensor) -> tf.Tensor:
    queries = tf.split(query, len(self.members), axis=1)
    candidates = tf.split(candidate, len(self.members), axis=1)
    return tf.add_n([head(q, c, user_index, movie_index) for head, q, c in
                     zip(self.members, queries, candidates)]) / len(self.members)


@dataclasses.dataclass
class Ensemble:
  """What the export reads of a trained model (query_tower, candidate_tower, rating_head),
  made of the members'. Nothing to train: a plain holder."""
  query_tower: EnsembleTower
  candidate_tower: EnsembleTower
  rating_head: Optional[EnsembleRatingHead]

  @classmethod
  def of(cls, members: Sequence[RecommenderModel]) -> 'Ensemble':
    rating_head = None
    if members[0].rating_head is not None:
      rating_head = EnsembleRatingHead([m.rating_head for m in members], name='rating_head')
    return cls(EnsembleTower([m.query_tower for m in members], name='query_tower'),
               EnsembleTower([m.candidate_tower for m in members], name='candidate_tower'),
               rating_head)
