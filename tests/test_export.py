"""The serving index: ScaNN's top-k against exact brute-force top-k; the Evaluator's rank."""
import types

import numpy as np
import pytest
import tensorflow as tf

from components import features as f
from components.model import export


def _search(index_kind, embeddings, queries, k):
  scores, positions = export.build_index(index_kind, tf.constant(embeddings), k)(queries)
  return positions.numpy(), scores.numpy()


@pytest.mark.parametrize('num_candidates, k', [(200, 20), (1_700, 100), (30_000, 10)])
def test_scann_recall_against_brute_force(num_candidates, k):
  rng = np.random.default_rng(0)
  # Clustered, unequal-norm embeddings, like a trained tower's, not an easy isotropic cloud.
  centers = rng.normal(size=(16, 32))
  embeddings = (centers[rng.integers(16, size=num_candidates)]
                + 0.5 * rng.normal(size=(num_candidates, 32))).astype(np.float32)
  queries = tf.constant(rng.normal(size=(64, 32)).astype(np.float32))
  approximate, approximate_scores = _search('scann', embeddings, queries, k)
  exact, _ = _search('brute-force', embeddings, queries, k)
  recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approximate, exact)])
  assert recall >= 0.95, recall
  assert np.all(np.diff(approximate_scores, axis=1) <= 1e-5)  # best first


def test_parameters_search_small_catalogues_exhaustively():
  assert export.scann_parameters(1_682, 100) == {
      'num_leaves': 2, 'num_leaves_to_search': 2, 'num_reordering_candidates': 400}
  large = export.scann_parameters(1_000_000, 10)
  assert large['num_leaves'] == 1000 and 20 <= large['num_leaves_to_search'] <= 100


@pytest.mark.parametrize('num_candidates', [1, 4, 20])
def test_any_catalogue_size_gets_an_exact_index(num_candidates):
  """ScaNN needs 16 candidates to train its quantizer (fewer failed, one crashed the process):
  smaller catalogues are scored by brute force, and every size answers exactly."""
  rng = np.random.default_rng(1)
  embeddings = rng.normal(size=(num_candidates, 8)).astype(np.float32)
  queries = tf.constant(rng.normal(size=(5, 8)).astype(np.float32))
  k = min(10, num_candidates)
  positions, scores = _search('scann', embeddings, queries, k)
  exact = np.argsort(-(queries.numpy() @ embeddings.T), axis=1, kind='stable')[:, :k]
  np.testing.assert_array_equal(positions, exact)
  assert scores.shape == (5, k)


def _catalogue_of(ratings):
  """A Catalogue read from hand-made transformed training examples: (movie index, timestamp)."""
  from components import features as f
  from components.model.catalogue import Catalogue
  movies = tf.constant([movie for movie, _ in ratings], tf.int64)
  examples = {
      f.MOVIE_ID_INDEX: movies, f.USER_ID_INDEX: tf.zeros_like(movies),
      f.USER_RATING: tf.fill([len(ratings)], 4.0),
      f.MOVIE_ID: tf.strings.as_string(movies), f.MOVIE_TITLE: tf.strings.as_string(movies),
      f.MOVIE_TITLE_TOKEN_INDICES: tf.ragged.constant([[0]] * len(ratings), tf.int64),
      f.MOVIE_GENRE_INDICES: tf.ragged.constant([[0]] * len(ratings), tf.int64),
      f.TIMESTAMP: tf.constant([when for _, when in ratings], tf.int64)}
  return Catalogue.from_dataset(tf.data.Dataset.from_tensor_slices(examples).batch(4))


def test_the_fallback_is_the_most_rated_of_the_last_30_days_ties_by_all_time_then_catalogue():
  day, latest = 24 * 60 * 60, 900_000_000
  days_ago = {10: [0, 1], 11: [40, 50, 60, 70], 12: [2, 30], 13: [29, 31, 45], 14: [100],
              15: [5, 6, 90]}
  catalogue = _catalogue_of([(movie, latest - ago * day)
                             for movie, agos in days_ago.items() for ago in agos])
  assert catalogue.movie_id_indices.tolist() == [10, 11, 12, 13, 14, 15]  # positions 0..5
  positions, counts = catalogue.popular(30)
  # Two each for 10, 12 (day 30 is in the window) and 15 (3 of all time, so first); then 13.
  assert positions.tolist() == [5, 0, 2, 3, 1, 4]
  assert counts.tolist() == [2, 2, 2, 1, 0, 0]
  assert catalogue.popular(1000)[0].tolist() == [1, 3, 5, 0, 2, 4]  # all time


def test_timeline_catalogues_count_each_user_s_first_movie_at_its_first_example_s_time():
  """A first movie is never a next movie, only a context of one: the fallback counts it."""
  from components import features as f
  from components.model.catalogue import Catalogue
  movies = tf.constant([1, 2, 3, 1], tf.int64)  # the next movies
  examples = {
      f.MOVIE_ID_INDEX: movies, f.USER_ID_INDEX: tf.constant([0, 0, 1, 1], tf.int64),
      f.USER_RATING: tf.fill([4], 4.0), f.MOVIE_ID: tf.strings.as_string(movies),
      f.MOVIE_TITLE: tf.strings.as_string(movies),
      f.MOVIE_TITLE_TOKEN_INDICES: tf.ragged.constant([[0]] * 4, tf.int64),
      f.MOVIE_GENRE_INDICES: tf.ragged.constant([[0]] * 4, tf.int64),
      f.TIMESTAMP: tf.constant([10, 20, 30, 40], tf.int64),
      f.CONTEXT_MOVIE_ID_INDICES: tf.ragged.constant([[2], [2, 1], [3], [3, 2, 1]], tf.int64)}
  catalogue = Catalogue.from_dataset(tf.data.Dataset.from_tensor_slices(examples).batch(3))
  assert catalogue.movie_id_indices.tolist() == [1, 2, 3]
  assert catalogue.first_movies[0].tolist() == [1, 2]  # movies 2 and 3, by position
  assert catalogue.first_movies[1].tolist() == [10, 30]
  assert catalogue.rating_counts.tolist() == [2, 2, 2]
  assert catalogue.popular(1000)[1].tolist() == [2, 2, 2]


def _label_ranks(embeddings, missing, queries, labels):
  """RecommenderModule.eval_outputs on a catalogue laid out by index, without a trained model."""
  module = types.SimpleNamespace(embeddings_by_movie_index=tf.constant(embeddings),
                                 missing_movie_penalty=tf.constant(missing))
  module.movie_scores = lambda q: export.RecommenderModule.movie_scores(module, q)
  outputs = export.RecommenderModule.eval_outputs(
      module, {f.MOVIE_ID_INDEX: tf.constant(labels)}, tf.constant(queries))
  return outputs[f.EVAL_LABEL_RANK].numpy()[:, 0]


def test_the_eval_rank_is_in_the_top_k_exactly_when_in_top_k_says_so():
  """What the Evaluator counts (rank < k) against Keras' SparseTopKCategoricalAccuracy's
  tf.math.in_top_k, on scores with many ties and a movie index missing from the catalogue."""
  rng = np.random.default_rng(1)
  embeddings = rng.integers(-2, 3, size=(12, 3)).astype(np.float32)  # small ints: ties
  missing = np.zeros(12, np.float32)
  missing[5] = export.MISSING_SCORE
  queries = rng.integers(-2, 3, size=(200, 3)).astype(np.float32)
  labels = rng.integers(0, 12, size=200)
  ranks = _label_ranks(embeddings, missing, queries, labels)
  scores = queries @ embeddings.T + missing
  for k in range(1, 13):
    expected = tf.math.in_top_k(tf.constant(labels, tf.int32), tf.constant(scores), k).numpy()
    assert np.array_equal(ranks < k, expected), k


def test_a_row_with_a_score_that_is_not_finite_is_in_no_top_k():
  embeddings = np.eye(3, dtype=np.float32)
  queries = np.array([[1, 0, 0], [np.nan, 0, 0], [np.inf, 0, 0]], np.float32)
  ranks = _label_ranks(embeddings, np.zeros(3, np.float32), queries, np.array([0, 0, 0]))
  assert ranks.tolist() == [0, 3, 3]
