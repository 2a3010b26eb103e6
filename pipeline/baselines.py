"""Baselines scored on the pipeline's own splits, and the ranking metrics they share with models.

Every scorer produces a score per catalogue movie for each eval example; `top_k_accuracy`
turns those into the hit rate of the label movie in the top k, counting the movies the query
has already seen (the TFRS tutorials' protocol) and excluding them (what a product shows).
"Seen" is the user's training movies for retrieval, the example's context for sequential.
Baselines:
- retrieval: most-popular (training rating counts) and EASE (Steck 2019: a closed-form
  item-item linear model, B = I - P / diag(P) with P = (X'X + l2 I)^-1, zero diagonal);
- sequential: most-popular (training label counts) and first-order Markov (how often each
  movie followed the context's last movie in training; popularity breaks ties);
- rating RMSE: global mean + user bias + item bias, fitted by regularised alternating means.
"""
import dataclasses
import glob
import os
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components import features as f
from components.model.biases import fit_biases

DEFAULT_KS = (10, 50, 100)


@dataclasses.dataclass
class Ratings:
  """The examples of one split: user and (label) movie ids as bytes, the ratings, and for
  timeline examples each one's context movie ids, oldest first."""
  user_ids: List[bytes]
  movie_ids: List[bytes]
  ratings: List[float] = dataclasses.field(default_factory=list)
  contexts: List[List[bytes]] = dataclasses.field(default_factory=list)


def ratings_of_split(examples_uri: str, split: str) -> Ratings:
  """Every example of one split of an ExampleGen (or TimelineGen) output."""
  files = glob.glob(os.path.join(examples_uri, f'Split-{split}', '*'))
  if not files:
    raise FileNotFoundError(f'no files for split {split!r} under {examples_uri}')
  spec = {f.USER_ID: tf.io.FixedLenFeature([], tf.string),
          f.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
          f.USER_RATING: tf.io.FixedLenFeature([], tf.float32),
          f.CONTEXT_MOVIE_IDS: tf.io.VarLenFeature(tf.string)}
  ratings = Ratings([], [], [], [])
  for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4096):
    parsed = tf.io.parse_example(batch, spec)
    ratings.user_ids.extend(parsed[f.USER_ID].numpy().tolist())
    ratings.movie_ids.extend(parsed[f.MOVIE_ID].numpy().tolist())
    ratings.ratings.extend(parsed[f.USER_RATING].numpy().tolist())
    ratings.contexts.extend(tf.RaggedTensor.from_sparse(parsed[f.CONTEXT_MOVIE_IDS]).to_list())
  return ratings


def top_k_accuracy(batches: Iterable[Tuple[np.ndarray, np.ndarray, Sequence[np.ndarray]]],
                   ks: Sequence[int] = DEFAULT_KS) -> Dict[str, float]:
  """Hit rates from (scores [n, movies], label movie index [n] (-1: not in the catalogue),
  seen movie indices of each row) batches, seen in the scores' index space.

  Returns top_{k}_accuracy (seen movies ranked too) and top_{k}_accuracy_unseen (each row's
  seen movies removed from the ranking).
  """
  hits = {(k, exclude): 0 for k in ks for exclude in (False, True)}
  total = 0
  for scores, labels, seen_rows in batches:
    scores = np.array(scores, np.float64, copy=True)
    rows = np.arange(len(labels))
    in_catalogue = labels >= 0
    label_scores = scores[rows, np.maximum(labels, 0)]
    ranks = (scores > label_scores[:, None]).sum(axis=1)
    for row, seen in enumerate(seen_rows):
      scores[row, seen] = -np.inf
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

  def seen_rows(self, ratings: Ratings) -> List[np.ndarray]:
    """Per example, the movies already seen: its context if it has one, else the user's."""
    if any(ratings.contexts):
      return [self.labels(context) for context in ratings.contexts]
    empty = np.zeros([0], np.int64)
    return [self.seen.get(user, empty) for user in ratings.user_ids]

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


def _batched(labels: np.ndarray, seen_rows: List[np.ndarray],
             score: Callable[[slice], np.ndarray], batch_size: int = 4096):
  """(scores, labels, seen) batches for top_k_accuracy; score(rows) scores a slice of rows."""
  for start in range(0, len(labels), batch_size):
    rows = slice(start, start + batch_size)
    yield score(rows), labels[rows], seen_rows[rows]


def baseline_accuracy(train: Ratings, eval_ratings: Ratings, ease_l2: float = 500.0,
                      ks: Sequence[int] = DEFAULT_KS) -> Dict[str, Dict[str, float]]:
  """Retrieval baselines, {'most-popular': metrics, 'EASE': metrics} (see top_k_accuracy)."""
  training = TrainingMatrix(train)
  popularity = training.matrix.sum(axis=0)
  weights = ease_weights(training.matrix, ease_l2)
  labels = training.labels(eval_ratings.movie_ids)
  seen_rows = training.seen_rows(eval_ratings)

  def popular(rows):
    return np.broadcast_to(popularity, (len(labels[rows]), len(popularity)))

  def ease(rows):
    return training.user_rows(eval_ratings.user_ids[rows]) @ weights

  return {
      'most-popular': top_k_accuracy(_batched(labels, seen_rows, popular), ks),
      'EASE': top_k_accuracy(_batched(labels, seen_rows, ease), ks),
  }


def sequential_baseline_accuracy(train: Ratings, eval_ratings: Ratings,
                                 ks: Sequence[int] = DEFAULT_KS) -> Dict[str, Dict[str, float]]:
  """Sequential baselines on timeline examples, {'most-popular', 'Markov'} (see top_k_accuracy).

  The catalogue is the movies that are labels in training; both count labels, so popularity
  here is "how often a movie is the next one".
  """
  training = TrainingMatrix(train)
  movies = len(training.movies)
  popularity = np.bincount(training.labels(train.movie_ids), minlength=movies).astype(np.float64)
  # One row per movie that was ever the last of a training context; the extra last row, all
  # zeros, stands for a last movie never seen there (popularity alone decides).
  lasts = sorted({context[-1] for context in train.contexts})
  last_row = {movie: row for row, movie in enumerate(lasts)}
  transitions = np.zeros((len(lasts) + 1, movies), np.float32)
  np.add.at(transitions, ([last_row[context[-1]] for context in train.contexts],
                          training.labels(train.movie_ids)), 1)
  tie_break = (popularity / (popularity.max() + 1)).astype(np.float32)
  labels = training.labels(eval_ratings.movie_ids)
  seen_rows = training.seen_rows(eval_ratings)
  eval_last = np.array([last_row.get(context[-1], len(lasts))
                        for context in eval_ratings.contexts])

  def popular(rows):
    return np.broadcast_to(popularity, (len(labels[rows]), movies))

  def markov(rows):
    return transitions[eval_last[rows]] + tie_break

  return {
      'most-popular': top_k_accuracy(_batched(labels, seen_rows, popular), ks),
      'Markov': top_k_accuracy(_batched(labels, seen_rows, markov), ks),
  }


def bias_baseline_rmse(train: Ratings, eval_ratings: Ratings, l2: float = 10.0) -> float:
  """RMSE on the eval ratings of rating = mean + user bias + movie bias (components/model/
  biases.py; unknown users and movies get no bias), clipped to the rating scale."""
  users = {user: i for i, user in enumerate(sorted(set(train.user_ids)))}
  movies = {movie: i for i, movie in enumerate(sorted(set(train.movie_ids)))}
  mean, user_bias, movie_bias = fit_biases(
      np.array([users[u] for u in train.user_ids]), np.array([movies[m] for m in train.movie_ids]),
      np.array(train.ratings), len(users), len(movies), l2)
  predicted = np.array([
      mean + (user_bias[users[u]] if u in users else 0.0)
      + (movie_bias[movies[m]] if m in movies else 0.0)
      for u, m in zip(eval_ratings.user_ids, eval_ratings.movie_ids)])
  predicted = np.clip(predicted, f.MIN_RATING, f.MAX_RATING)
  return float(np.sqrt(np.mean((predicted - np.array(eval_ratings.ratings)) ** 2)))
