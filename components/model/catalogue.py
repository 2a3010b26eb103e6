"""The candidate catalogue: every movie the model can recommend, with its features.

Built from the transformed training split: a movie never rated in training has an untrained
id embedding, so it is left out of the index rather than ranked at random.
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from components import features as f

DAY_SECONDS = 24 * 60 * 60


def _id_lists(values) -> List[list]:
  """A sparse or ragged [batch, None] id feature as one python list per row."""
  if isinstance(values, tf.SparseTensor):
    values = tf.RaggedTensor.from_sparse(values)
  return values.to_list()


def _ragged(rows: List[np.ndarray]) -> tf.RaggedTensor:
  values = np.concatenate(rows) if rows else np.zeros([0], np.int64)
  return tf.RaggedTensor.from_row_lengths(
      values.astype(np.int64), np.array([len(row) for row in rows], np.int64))


@dataclasses.dataclass
class Catalogue:
  """One row per movie, ordered by movie_id_index.

  Attributes:
    movie_ids, movie_titles: raw byte strings, returned to clients.
    movie_id_indices: the movie id vocabulary index of each movie.
    title_token_indices, genre_indices: per movie, the id lists the candidate tower embeds.
    rating_counts: ratings per movie in the training split (popularity).
    user_histories: per user id vocabulary index, the catalogue positions of the movies the
      user rated in training.
    ratings: the training ratings as (user index, movie index, rating) arrays, for the
      rating head's starting biases.
    timestamps: each of those ratings' timestamp (seconds), for the recent popularity of the
      serving fallback (`popular`); None where the training examples carry none. (For the
      sequential model the examples are timelines: the timestamp of each example's next movie.)
    first_movies: timelines only: (catalogue positions, timestamps) of each user's first
      movie, which is never a next movie, only the context of their first example (whose
      timestamp it takes: users rate in bursts). The popularity figures (rating_counts,
      `popular`) count them: new users' first movies are what the fallback must guess.
  """
  movie_ids: np.ndarray
  movie_titles: np.ndarray
  movie_id_indices: np.ndarray
  title_token_indices: List[np.ndarray]
  genre_indices: List[np.ndarray]
  rating_counts: np.ndarray
  user_histories: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
  ratings: Tuple[np.ndarray, np.ndarray, np.ndarray] = (
      np.zeros([0], np.int64), np.zeros([0], np.int64), np.zeros([0], np.float32))
  timestamps: Optional[np.ndarray] = None
  first_movies: Tuple[np.ndarray, np.ndarray] = (np.zeros([0], np.int64),
                                                 np.zeros([0], np.int64))

  def __len__(self) -> int:
    return len(self.movie_ids)

  @classmethod
  def from_dataset(cls, dataset: tf.data.Dataset) -> 'Catalogue':
    """Collects the distinct movies of a batched, finite dataset of transformed features."""
    movies: Dict[int, dict] = {}
    counts: Dict[int, int] = {}
    rated: Dict[int, set] = {}  # user index -> movie indices
    triples, timestamps = ([], [], []), []
    firsts = ([], [])  # movie indices, timestamps
    for batch in dataset:
      # Each feature leaves TensorFlow once per batch, not once per new movie.
      indices = batch[f.MOVIE_ID_INDEX].numpy().reshape(-1)
      users = batch[f.USER_ID_INDEX].numpy().reshape(-1)
      for collected, values in zip(triples, (users, indices, batch[f.USER_RATING].numpy())):
        collected.append(values.reshape(-1))
      if f.TIMESTAMP in batch:
        timestamps.append(batch[f.TIMESTAMP].numpy().reshape(-1))
      if f.CONTEXT_MOVIE_ID_INDICES in batch:  # timelines: a context of one is a first movie
        context = batch[f.CONTEXT_MOVIE_ID_INDICES]
        if isinstance(context, tf.SparseTensor):
          context = tf.RaggedTensor.from_sparse(context)
        rows = np.flatnonzero(context.row_lengths().numpy() == 1)
        firsts[0].extend(context.values.numpy()[context.row_starts().numpy()[rows]])
        firsts[1].extend(batch[f.TIMESTAMP].numpy().reshape(-1)[rows] if f.TIMESTAMP in batch
                         else np.zeros(len(rows), np.int64))
      movie_ids = batch[f.MOVIE_ID].numpy().reshape(-1)
      titles = batch[f.MOVIE_TITLE].numpy().reshape(-1)
      tokens = _id_lists(batch[f.MOVIE_TITLE_TOKEN_INDICES])
      genres = _id_lists(batch[f.MOVIE_GENRE_INDICES])
      for row, index in enumerate(indices.tolist()):
        counts[index] = counts.get(index, 0) + 1
        rated.setdefault(int(users[row]), set()).add(index)
        if index not in movies:
          movies[index] = {'movie_id': movie_ids[row], 'title': titles[row],
                           'tokens': np.array(tokens[row], np.int64),
                           'genres': np.array(genres[row], np.int64)}
    if not movies:
      raise ValueError('the training split holds no ratings: cannot build a catalogue')
    order = sorted(movies)
    position = {index: row for row, index in enumerate(order)}
    # A first movie never a next movie in training is not in the catalogue: not counted.
    first_movies = [(position[movie], when) for movie, when in zip(*firsts) if movie in position]
    for row, _ in first_movies:
      counts[order[row]] += 1
    return cls(
        movie_ids=np.array([movies[i]['movie_id'] for i in order], dtype=object),
        movie_titles=np.array([movies[i]['title'] for i in order], dtype=object),
        movie_id_indices=np.array(order, dtype=np.int64),
        title_token_indices=[movies[i]['tokens'].astype(np.int64) for i in order],
        genre_indices=[movies[i]['genres'].astype(np.int64) for i in order],
        rating_counts=np.array([counts[i] for i in order], dtype=np.int64),
        user_histories={user: np.array(sorted(position[i] for i in movie_indices), np.int64)
                        for user, movie_indices in rated.items()},
        ratings=tuple(np.concatenate(values) for values in triples),
        timestamps=np.concatenate(timestamps).astype(np.int64) if timestamps else None,
        first_movies=tuple(np.array(column, np.int64).reshape(-1)
                           for column in zip(*first_movies)) if first_movies else
        cls.first_movies)

  def popular(self, days: int) -> Tuple[np.ndarray, np.ndarray]:
    """The serving fallback: every catalogue position, most rated in the last `days` days of
    the training ratings first (timestamps from the latest minus days * 86400 on), ties by
    ratings of all time, then catalogue order; and each one's ratings in that window.

    Without timestamps the window is all time. Returns (positions [movies] int64,
    recent counts [movies] int64), in ranking order.
    """
    recent = self.rating_counts
    if self.timestamps is not None and len(self.timestamps):
      rows = np.concatenate([np.searchsorted(self.movie_id_indices, self.ratings[1]),
                             self.first_movies[0]])
      timestamps = np.concatenate([self.timestamps, self.first_movies[1]])
      in_window = timestamps >= timestamps.max() - days * DAY_SECONDS
      recent = np.bincount(rows[in_window], minlength=len(self)).astype(np.int64)
    ranking = np.lexsort((np.arange(len(self)), -self.rating_counts, -recent))
    return ranking.astype(np.int64), recent[ranking]

  def candidate_features(self) -> Dict[str, tf.Tensor]:
    """The catalogue as one batch of candidate-tower inputs."""
    return {
        f.MOVIE_ID_INDEX: tf.constant(self.movie_id_indices),
        f.MOVIE_TITLE_TOKEN_INDICES: _ragged(self.title_token_indices),
        f.MOVIE_GENRE_INDICES: _ragged(self.genre_indices),
    }

  def positions(self, table_size: int) -> tf.Tensor:
    """Each of the table_size movie indices' row in the catalogue; -1 for those outside it."""
    positions = np.full(table_size, -1, np.int64)
    positions[self.movie_id_indices] = np.arange(len(self))
    return tf.constant(positions)

  def sampling_probability(self, table_size: int) -> tf.Tensor:
    """P(movie index) in training, for the logQ correction; a table of table_size rows."""
    probability = np.full(table_size, 1.0 / max(1, self.rating_counts.sum()), np.float32)
    probability[self.movie_id_indices] = self.rating_counts / self.rating_counts.sum()
    return tf.constant(probability)
