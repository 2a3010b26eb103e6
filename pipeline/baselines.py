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
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

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


def split_files(examples_uri: str, split: str) -> List[str]:
  """The files of one split of an Examples artifact, in a fixed order."""
  files = sorted(glob.glob(os.path.join(examples_uri, f'Split-{split}', '*')))
  if not files:
    raise FileNotFoundError(f'no files for split {split!r} under {examples_uri}')
  return files


def ratings_of_split(examples_uri: str, split: str) -> Ratings:
  """Every example of one split of an ExampleGen (or TimelineGen) output, in file order."""
  files = split_files(examples_uri, split)
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


def _ranks(scores: np.ndarray, label_scores: np.ndarray) -> np.ndarray:
  """Per row, the other movies scored at least as high as the label (a tie is not a hit)."""
  return (scores >= label_scores[:, None]).sum(axis=1) - 1


def unseen_ranks(scores: np.ndarray, labels: np.ndarray,
                 seen_rows: Sequence[np.ndarray]) -> np.ndarray:
  """Per row, how many movies outside the row's seen ones rank ahead of the label.

  scores: [n, movies]; labels: [n] movie indices (-1: not in the catalogue, never a hit: its
  rank is inf); seen_rows: n arrays of movie indices, left out of the ranking (the label is
  ranked even if seen). Ties count against the label (see top_k_accuracy). Returns [n] float
  ranks, 0 = first.
  """
  scores = np.array(scores, np.float64, copy=True)
  rows = np.arange(len(labels))
  label_columns = np.maximum(labels, 0)
  label_scores = scores[rows, label_columns]
  for row, seen in enumerate(seen_rows):
    scores[row, seen] = -np.inf
  scores[rows, label_columns] = label_scores
  return np.where(labels >= 0, _ranks(scores, label_scores), np.inf)


def top_k_accuracy(batches: Iterable[Tuple[np.ndarray, np.ndarray, Sequence[np.ndarray]]],
                   ks: Sequence[int] = DEFAULT_KS) -> Dict[str, float]:
  """Hit rates from (scores [n, movies], label movie index [n] (-1: not in the catalogue),
  seen movie indices of each row) batches, seen in the scores' index space.

  Returns top_{k}_accuracy (seen movies ranked too) and top_{k}_accuracy_unseen (each row's
  seen movies removed from the ranking). Ties count against the label: a movie scored the
  same ranks ahead of it (else a model scoring every movie alike would hit every time).
  """
  hits = {(k, exclude): 0 for k in ks for exclude in (False, True)}
  total = 0
  for scores, labels, seen_rows in batches:
    scores = np.asarray(scores, np.float64)
    in_catalogue = labels >= 0
    label_scores = scores[np.arange(len(labels)), np.maximum(labels, 0)]
    ranks_seen = _ranks(scores, label_scores)
    ranks_unseen = unseen_ranks(scores, labels, seen_rows)
    for k in ks:
      hits[(k, False)] += int(np.sum(in_catalogue & (ranks_seen < k)))
      hits[(k, True)] += int(np.sum(in_catalogue & (ranks_unseen < k)))
    total += len(labels)
  metrics = {}
  for k in ks:
    metrics[f'top_{k}_accuracy'] = hits[(k, False)] / total
    metrics[f'top_{k}_accuracy_unseen'] = hits[(k, True)] / total
  return metrics


def movie_indices(movie_ids: Sequence[bytes], movie_index: Dict[bytes, int]) -> np.ndarray:
  """Each movie's index (-1: not in movie_index, i.e. outside the catalogue)."""
  return np.array([movie_index.get(movie, -1) for movie in movie_ids], np.int64)


def seen_rows(eval_ratings: Ratings, train: Ratings,
              movie_index: Dict[bytes, int]) -> List[np.ndarray]:
  """Per eval example, the movies it has already seen, as indices of movie_index: its context
  (timeline examples), or else its user's training movies. Movies outside movie_index are
  left out: they are not ranked anyway."""
  def known(movie_ids) -> np.ndarray:
    indices = movie_indices(movie_ids, movie_index)
    return indices[indices >= 0]

  if any(eval_ratings.contexts):
    return [known(context) for context in eval_ratings.contexts]
  by_user: Dict[bytes, List[bytes]] = {}
  for user, movie in zip(train.user_ids, train.movie_ids):
    by_user.setdefault(user, []).append(movie)
  return [known(by_user.get(user, [])) for user in eval_ratings.user_ids]


def accuracies(scorers: Dict[str, Callable[[slice], np.ndarray]], labels: np.ndarray,
               seen: List[np.ndarray], ks: Sequence[int] = DEFAULT_KS,
               batch_size: int = 4096) -> Dict[str, Dict[str, float]]:
  """top_k_accuracy of each scorer; scorer(rows) scores a slice of the eval examples, whose
  label indices and seen movies are labels[rows] and seen[rows]."""
  def batches(score):
    for start in range(0, len(labels), batch_size):
      rows = slice(start, min(start + batch_size, len(labels)))
      yield score(rows), labels[rows], seen[rows]

  return {name: top_k_accuracy(batches(score), ks) for name, score in scorers.items()}


def _index(ids: Sequence[bytes]) -> Dict[bytes, int]:
  """Position of each distinct id, sorted. Over the training movies: the baselines' catalogue."""
  return {value: i for i, value in enumerate(sorted(set(ids)))}


def _training_counts(train: Ratings, movie_index: Dict[bytes, int]) -> np.ndarray:
  """How often each catalogue movie is a training example's movie (popularity)."""
  return np.bincount(movie_indices(train.movie_ids, movie_index),
                     minlength=len(movie_index)).astype(np.float64)


def _most_popular(counts: np.ndarray) -> Callable[[slice], np.ndarray]:
  """Scores every movie by its training count, whatever the query."""
  return lambda rows: np.broadcast_to(counts, (rows.stop - rows.start, len(counts)))


def ease_weights(matrix: np.ndarray, l2: float) -> np.ndarray:
  """EASE's item-item weights (movies x movies) for a binary user x movie matrix."""
  gram = matrix.T.astype(np.float64) @ matrix
  gram[np.diag_indices_from(gram)] += l2
  inverse = np.linalg.inv(gram)
  weights = -inverse / np.diag(inverse)
  weights[np.diag_indices_from(weights)] = 0.0
  return weights.astype(np.float32)


def baseline_accuracy(train: Ratings, eval_ratings: Ratings, ease_l2: float = 500.0,
                      ks: Sequence[int] = DEFAULT_KS) -> Dict[str, Dict[str, float]]:
  """Retrieval baselines, {'most-popular': metrics, 'EASE': metrics} (see top_k_accuracy)."""
  movie_index = _index(train.movie_ids)
  users = _index(train.user_ids)
  matrix = np.zeros((len(users), len(movie_index)), np.float32)  # who rated what, 0/1
  matrix[[users[user] for user in train.user_ids], movie_indices(train.movie_ids, movie_index)] = 1
  weights = ease_weights(matrix, ease_l2)
  no_ratings = np.zeros(len(movie_index), np.float32)  # a user without training ratings

  def ease(rows):
    return np.stack([matrix[users[user]] if user in users else no_ratings
                     for user in eval_ratings.user_ids[rows]]) @ weights

  return accuracies(
      {'most-popular': _most_popular(_training_counts(train, movie_index)), 'EASE': ease},
      movie_indices(eval_ratings.movie_ids, movie_index),
      seen_rows(eval_ratings, train, movie_index), ks)


def markov_scorer(lasts: Sequence[bytes], nexts: Sequence[bytes], movie_index: Dict[bytes, int]
                  ) -> Callable[[Sequence[Optional[bytes]]], np.ndarray]:
  """First-order Markov: score(last movies [n]) -> [n, movies] scores of each next movie.

  Fit on transitions (lasts[i] -> nexts[i]): a movie's score is how often it followed the
  query's last movie, plus a tie-break under 1 by how often it was a next movie at all; a last
  movie never seen in the fit (or None, an empty history) leaves popularity alone to decide.
  nexts outside movie_index are left out.
  """
  nexts_index = movie_indices(nexts, movie_index)
  known = nexts_index >= 0
  counts = np.bincount(nexts_index[known], minlength=len(movie_index)).astype(np.float64)
  # One row per movie that was ever a last one; the extra last row, all zeros, stands for a
  # last movie never seen (popularity alone decides).
  last_row = {movie: row for row, movie in enumerate(sorted(set(lasts)))}
  transitions = np.zeros((len(last_row) + 1, len(movie_index)), np.float32)
  np.add.at(transitions, (np.array([last_row[last] for last in lasts], np.int64)[known],
                          nexts_index[known]), 1)
  tie_break = (counts / (counts.max(initial=0) + 1)).astype(np.float32)

  def score(last_movies: Sequence[Optional[bytes]]) -> np.ndarray:
    return transitions[[last_row.get(last, len(last_row)) for last in last_movies]] + tie_break

  return score


def sequential_baseline_accuracy(train: Ratings, eval_ratings: Ratings,
                                 ks: Sequence[int] = DEFAULT_KS) -> Dict[str, Dict[str, float]]:
  """Sequential baselines on timeline examples, {'most-popular', 'Markov'} (see top_k_accuracy).

  The catalogue is the movies that are labels in training; both count labels, so popularity
  here is "how often a movie is the next one".
  """
  movie_index = _index(train.movie_ids)
  counts = _training_counts(train, movie_index)
  markov = markov_scorer([context[-1] for context in train.contexts], train.movie_ids,
                         movie_index)
  eval_lasts = [context[-1] for context in eval_ratings.contexts]
  return accuracies({'most-popular': _most_popular(counts),
                     'Markov': lambda rows: markov(eval_lasts[rows])},
                    movie_indices(eval_ratings.movie_ids, movie_index),
                    seen_rows(eval_ratings, train, movie_index), ks)


def bias_baseline_rmse(train: Ratings, eval_ratings: Ratings, l2: float = 10.0) -> float:
  """RMSE on the eval ratings of rating = mean + user bias + movie bias (components/model/
  biases.py; unknown users and movies get no bias), clipped to the rating scale."""
  users, movies = _index(train.user_ids), _index(train.movie_ids)
  mean, user_bias, movie_bias = fit_biases(
      np.array([users[u] for u in train.user_ids]), np.array([movies[m] for m in train.movie_ids]),
      np.array(train.ratings), len(users), len(movies), l2)
  predicted = np.array([
      mean + (user_bias[users[u]] if u in users else 0.0)
      + (movie_bias[movies[m]] if m in movies else 0.0)
      for u, m in zip(eval_ratings.user_ids, eval_ratings.movie_ids)])
  predicted = np.clip(predicted, f.MIN_RATING, f.MAX_RATING)
  return float(np.sqrt(np.mean((predicted - np.array(eval_ratings.ratings)) ** 2)))
