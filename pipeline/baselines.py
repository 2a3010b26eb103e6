"""Baselines scored on the pipeline's own splits, and the ranking metrics they share with models.

Every scorer produces a score per catalogue movie for each eval rating; `top_k_accuracy` turns
those into the hit rate of the rated movie in the top k, counting the user's training movies
(the TFRS tutorials' protocol) and excluding them (what a product shows).
Baselines: most-popular (training rating counts) and EASE (Steck 2019: a closed-form item-item
linear model, B = I - P / diag(P) with P = (X'X + l2 I)^-1, zero diagonal).
"""
import dataclasses
import glob
import os
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components import features as f

DEFAULT_KS = (10, 50, 100)


@dataclasses.dataclass
class Ratings:
  """(user id, movie id) pairs of one split, as bytes."""
  user_ids: List[bytes]
  movie_ids: List[bytes]


def ratings_of_split(examples_uri: str, split: str) -> Ratings:
  """The (user, movie) of every rating in one split of an ExampleGen output."""
  files = glob.glob(os.path.join(examples_uri, f'Split-{split}', '*'))
  if not files:
    raise FileNotFoundError(f'no files for split {split!r} under {examples_uri}')
  spec = {name: tf.io.FixedLenFeature([], tf.string) for name in (f.USER_ID, f.MOVIE_ID)}
  ratings = Ratings([], [])
  for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4096):
    parsed = tf.io.parse_example(batch, spec)
    ratings.user_ids.extend(parsed[f.USER_ID].numpy().tolist())
    ratings.movie_ids.extend(parsed[f.MOVIE_ID].numpy().tolist())
  return ratings


def top_k_accuracy(batches: Iterable[Tuple[np.ndarray, np.ndarray, Sequence[bytes]]],
                   seen: Dict[bytes, np.ndarray], ks: Sequence[int] = DEFAULT_KS
                   ) -> Dict[str, float]:
  """Hit rates from (scores [n, movies], label movie index [n] (-1: not in the catalogue),
  user ids [n]) batches; seen: each user's training movie indices, in the same index space.

  Returns top_{k}_accuracy (seen movies ranked too) and top_{k}_accuracy_unseen (each user's
  training movies removed from the ranking).
  """
  hits = {(k, exclude): 0 for k in ks for exclude in (False, True)}
  total = 0
  for scores, labels, users in batches:
    scores = np.array(scores, np.float64, copy=True)
    rows = np.arange(len(labels))
    in_catalogue = labels >= 0
    label_scores = scores[rows, np.maximum(labels, 0)]
    ranks = (scores > label_scores[:, None]).sum(axis=1)
    for row, user in enumerate(users):
      scores[row, seen.get(user, [])] = -np.inf
    ranks_unseen = (scores > label_scores[:, None]).sum(axis=1)
    for k in ks:
      hits[(k, False)] += int(np.sum(in_catalogue & (ranks < k)))
      hits[(k, True)] += int(np.sum(in_catalogue & (ranks_unseen < k)))
    total += len(labels)
  metrics = {}
  for k in ks:
    metrics[f'top_{k}_accuracy'] = hits[(k, False)] / total
    metrics[f'top_{k}_accuracy_unseen'] = hits[(k, True)] / total
  return metrics


class TrainingMatrix:
  """The training ratings as a binary user x movie matrix, over the movies rated in training."""

  def __init__(self, train: Ratings):
    self.movies = sorted(set(train.movie_ids))
    self.movie_index = {movie: i for i, movie in enumerate(self.movies)}
    self.users = sorted(set(train.user_ids))
    self.user_index = {user: i for i, user in enumerate(self.users)}
    self.matrix = np.zeros((len(self.users), len(self.movies)), np.float32)
    self.matrix[[self.user_index[u] for u in train.user_ids],
                [self.movie_index[m] for m in train.movie_ids]] = 1.0
    self.seen = {user: np.flatnonzero(self.matrix[row]) for user, row in self.user_index.items()}

  def labels(self, movie_ids: Sequence[bytes]) -> np.ndarray:
    return np.array([self.movie_index.get(movie, -1) for movie in movie_ids])

  def user_rows(self, user_ids: Sequence[bytes]) -> np.ndarray:
    """Each user's training row (zeros for a user with no training ratings)."""
    rows = np.zeros((len(user_ids), len(self.movies)), np.float32)
    for position, user in enumerate(user_ids):
      if user in self.user_index:
        rows[position] = self.matrix[self.user_index[user]]
    return rows


def ease_weights(matrix: np.ndarray, l2: float) -> np.ndarray:
  """EASE's item-item weights (movies x movies) for a binary user x movie matrix."""
  gram = matrix.T.astype(np.float64) @ matrix
  gram[np.diag_indices_from(gram)] += l2
  inverse = np.linalg.inv(gram)
  weights = -inverse / np.diag(inverse)
  weights[np.diag_indices_from(weights)] = 0.0
  return weights.astype(np.float32)


def baseline_accuracy(train: Ratings, eval_ratings: Ratings, ease_l2: float = 500.0,
                      ks: Sequence[int] = DEFAULT_KS, batch_size: int = 4096
                      ) -> Dict[str, Dict[str, float]]:
  """{'most-popular': metrics, 'EASE': metrics} on the eval ratings (see top_k_accuracy)."""
  training = TrainingMatrix(train)
  popularity = training.matrix.sum(axis=0)
  weights = ease_weights(training.matrix, ease_l2)
  labels = training.labels(eval_ratings.movie_ids)

  def batches(score):
    for start in range(0, len(labels), batch_size):
      users = eval_ratings.user_ids[start:start + batch_size]
      yield score(users), labels[start:start + batch_size], users

  return {
      'most-popular': top_k_accuracy(
          batches(lambda users: np.broadcast_to(popularity, (len(users), len(popularity)))),
          training.seen, ks),
      'EASE': top_k_accuracy(batches(lambda users: training.user_rows(users) @ weights),
                             training.seen, ks),
  }
