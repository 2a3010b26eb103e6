"""Baselines scored on the pipeline's own splits, and the ranking metrics they share with models.

Every scorer produces a score per catalogue movie for each eval example; `top_k_accuracy`
turns those into the hit rate of the label movie in the top k (HR@k: one label per example)
and its NDCG@k (1 / log2(rank + 2) for a hit at rank 0, 1, ...; 0 for a miss), counting the
movies the query has already seen (the TFRS tutorials' protocol) and excluding them (what a
product shows). "Seen" (seen_rows) is the user's training movies for retrieval; for sequential,
the example's context, or with whole_history (leave-last-out: every training example is before
the held-out movie) the user's whole training history: every movie of their training
examples, labels and contexts (user_histories), with the example's own context.
Baselines:
- retrieval: most-popular (training rating counts) and EASE (Steck 2019: a closed-form
  item-item linear model, B = I - P / diag(P) with P = (X'X + l2 I)^-1, zero diagonal), fitted
  on the training users' histories and scored from each query's seen movies (ease_scorer);
- sequential: most-popular (training label counts) and first-order Markov (how often each
  movie followed the context's last movie in training; popularity breaks ties); and, asked
  for (leave-last-out), EASE as for retrieval, the history being the timelines' movies;
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
DEFAULT_NDCG_KS = (10,)


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


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
  """NDCG@k of each row's single label at `ranks` (0 = first; inf: never a hit): 1 / log2(rank
  + 2) within the top k, else 0. With one relevant movie the ideal DCG is 1."""
  ranks = np.asarray(ranks, np.float64)
  return np.where(ranks < k, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)


def top_k_accuracy(batches: Iterable[Tuple[np.ndarray, np.ndarray, Sequence[np.ndarray]]],
                   ks: Sequence[int] = DEFAULT_KS,
                   ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS) -> Dict[str, float]:
  """Hit rates and NDCG from (scores [n, movies], label movie index [n] (-1: not in the
  catalogue), seen movie indices of each row) batches, seen in the scores' index space.

  Returns top_{k}_accuracy (seen movies ranked too) and top_{k}_accuracy_unseen (each row's
  seen movies removed from the ranking) for each k of ks, and likewise ndcg_{k} and
  ndcg_{k}_unseen for each k of ndcg_ks (means over the rows). Ties count against the label:
  a movie scored the same ranks ahead of it (else a model scoring every movie alike would hit
  every time).
  """
  sums = {(name, k, exclude): 0.0 for name, k_list in (('top', ks), ('ndcg', ndcg_ks))
          for k in k_list for exclude in (False, True)}
  total = 0
  for scores, labels, seen_rows in batches:
    scores = np.asarray(scores, np.float64)
    label_scores = scores[np.arange(len(labels)), np.maximum(labels, 0)]
    ranks = {False: np.where(labels >= 0, _ranks(scores, label_scores), np.inf),
             True: unseen_ranks(scores, labels, seen_rows)}
    for name, k, exclude in sums:
      sums[(name, k, exclude)] += float(np.sum(
          ranks[exclude] < k if name == 'top' else ndcg(ranks[exclude], k)))
    total += len(labels)
  metrics = {}
  for name, k, exclude in sums:
    key = f'top_{k}_accuracy' if name == 'top' else f'ndcg_{k}'
    metrics[key + ('_unseen' if exclude else '')] = sums[(name, k, exclude)] / total
  return metrics


def movie_indices(movie_ids: Sequence[bytes], movie_index: Dict[bytes, int]) -> np.ndarray:
  """Each movie's index (-1: not in movie_index, i.e. outside the catalogue)."""
  return np.array([movie_index.get(movie, -1) for movie in movie_ids], np.int64)


def _known(movie_ids: Sequence[bytes], movie_index: Dict[bytes, int]) -> np.ndarray:
  """The indices of the movies in movie_index (the others left out: they are not ranked)."""
  indices = movie_indices(movie_ids, movie_index)
  return indices[indices >= 0]


def _contexts(ratings: Ratings) -> List[List[bytes]]:
  """Each example's context (none for rating examples, whose contexts may be left empty)."""
  return ratings.contexts or [[] for _ in ratings.user_ids]


def user_histories(train: Ratings) -> Dict[bytes, List[bytes]]:
  """Each training user's movies: every movie of their training examples, the example's movie
  and (timeline examples) its context, each movie once, in order of first appearance."""
  histories: Dict[bytes, Dict[bytes, None]] = {}
  for user, movie, context in zip(train.user_ids, train.movie_ids, _contexts(train)):
    history = histories.setdefault(user, {})
    history.update(dict.fromkeys(context))
    history[movie] = None
  return {user: list(history) for user, history in histories.items()}


def seen_rows(eval_ratings: Ratings, train: Ratings, movie_index: Dict[bytes, int],
              whole_history: bool = False) -> List[np.ndarray]:
  """Per eval example, the movies it has already seen, as indices of movie_index: its user's
  whole training history (user_histories) with its own context; or, for timeline examples
  unless whole_history, its context alone (the tutorial's protocol, whose training examples
  may come after the eval one). whole_history is for leave-last-out, where every training
  example of the user is before the held-out movie. Movies outside movie_index are left out:
  they are not ranked anyway."""
  contexts = _contexts(eval_ratings)
  if any(contexts) and not whole_history:
    return [_known(context, movie_index) for context in contexts]
  histories = user_histories(train)
  return [_known(list(dict.fromkeys(histories.get(user, []) + list(context))), movie_index)
          for user, context in zip(eval_ratings.user_ids, contexts)]


def accuracies(scorers: Dict[str, Callable[[slice], np.ndarray]], labels: np.ndarray,
               seen: List[np.ndarray], ks: Sequence[int] = DEFAULT_KS,
               batch_size: int = 4096,
               ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS) -> Dict[str, Dict[str, float]]:
  """top_k_accuracy (with NDCG) of each scorer; scorer(rows) scores a slice of the eval
  examples, whose label indices and seen movies are labels[rows] and seen[rows]."""
  def batches(score):
    for start in range(0, len(labels), batch_size):
      rows = slice(start, min(start + batch_size, len(labels)))
      yield score(rows), labels[rows], seen[rows]

  return {name: top_k_accuracy(batches(score), ks, ndcg_ks) for name, score in scorers.items()}


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


def _history_matrix(histories: Sequence[np.ndarray], movies: int) -> np.ndarray:
  """A 0/1 [len(histories), movies] matrix: row i marks the movie indices histories[i]."""
  matrix = np.zeros((len(histories), movies), np.float32)
  for row, history in enumerate(histories):
    matrix[row, history] = 1
  return matrix


def ease_scorer(train: Ratings, queries: Sequence[np.ndarray], movie_index: Dict[bytes, int],
                l2: float) -> Callable[[slice], np.ndarray]:
  """EASE fitted on the training users' histories (user_histories: for timeline examples their
  labels and context movies) over movie_index; scorer(rows) scores the queries[rows], each a
  history of movie indices (seen_rows), as history (0/1) @ weights. An empty history scores
  every movie 0: a tie, so never a hit."""
  weights = ease_weights(_history_matrix(
      [_known(history, movie_index) for history in user_histories(train).values()],
      len(movie_index)), l2)
  return lambda rows: _history_matrix(queries[rows], len(movie_index)) @ weights


def baseline_accuracy(train: Ratings, eval_ratings: Ratings, ease_l2: float = 500.0,
                      ks: Sequence[int] = DEFAULT_KS) -> Dict[str, Dict[str, float]]:
  """Retrieval baselines, {'most-popular': metrics, 'EASE': metrics} (see top_k_accuracy);
  EASE scores each eval rating from its user's training movies (its seen movies)."""
  movie_index = _index(train.movie_ids)
  seen = seen_rows(eval_ratings, train, movie_index)
  return accuracies(
      {'most-popular': _most_popular(_training_counts(train, movie_index)),
       'EASE': ease_scorer(train, seen, movie_index, ease_l2)},
      movie_indices(eval_ratings.movie_ids, movie_index), seen, ks)


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
                                 ks: Sequence[int] = DEFAULT_KS, ease_l2: Optional[float] = None,
                                 whole_history: bool = False) -> Dict[str, Dict[str, float]]:
  """Sequential baselines on timeline examples, {'most-popular', 'Markov'} and, given ease_l2,
  'EASE' (see top_k_accuracy).

  The catalogue is the movies that are labels in training; both count labels, so popularity
  here is "how often a movie is the next one". whole_history (leave-last-out): each eval
  example's seen movies are its user's whole training history with its context (seen_rows),
  else its context alone. EASE is fitted on the training users' histories (labels and
  contexts) and scores each eval example from its seen movies: meant for leave-last-out, where
  no training history holds the held-out movie (with a hash split, a later training example's
  context may).
  """
  movie_index = _index(train.movie_ids)
  counts = _training_counts(train, movie_index)
  markov = markov_scorer([context[-1] for context in train.contexts], train.movie_ids,
                         movie_index)
  eval_lasts = [context[-1] for context in eval_ratings.contexts]
  seen = seen_rows(eval_ratings, train, movie_index, whole_history)
  scorers = {'most-popular': _most_popular(counts),
             'Markov': lambda rows: markov(eval_lasts[rows])}
  if ease_l2 is not None:
    scorers['EASE'] = ease_scorer(train, seen, movie_index, ease_l2)
  return accuracies(scorers, movie_indices(eval_ratings.movie_ids, movie_index), seen, ks)


def bias_baseline_rmse(train: Ratings, eval_ratings: Ratings, l2: float = 10.0,
                       scale: f.RatingScale = f.RATING_SCALES['whole-stars']) -> float:
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
  predicted = np.clip(predicted, scale.minimum, scale.maximum)
  return float(np.sqrt(np.mean((predicted - np.array(eval_ratings.ratings)) ** 2)))
