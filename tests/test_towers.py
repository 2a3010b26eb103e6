"""The sequential query tower's history encoders, on hand-made histories: every encoder reads
the real movies only (padding, and movies past max_context_length, change nothing), and the
user id, when used, moves the query while an unknown id reads one shared row."""
import numpy as np
import pytest
import tensorflow as tf

from components import features as f
from components.model.config import HISTORY_ENCODERS, ModelConfig
from components.model.towers import HISTORY_ENCODERS as ENCODER_CLASSES
from components.model.towers import ContextTower


def _tower(encoder, **config):
  tf.keras.utils.set_random_seed(0)
  return ContextTower(30, ModelConfig(kind='sequential', history_encoder=encoder,
                                      max_context_length=4, embedding_dim=8, layer_sizes=(8,),
                                      **config))


def _query(tower, histories, **features):
  return tower({f.CONTEXT_MOVIE_ID_INDICES: tf.ragged.constant(histories, tf.int64),
                **features}).numpy()


def test_every_configurable_encoder_has_a_class():
  assert sorted(ENCODER_CLASSES) == sorted(HISTORY_ENCODERS)


@pytest.mark.parametrize('encoder', HISTORY_ENCODERS)
def test_an_encoder_reads_the_real_movies_only(encoder):
  tower = _tower(encoder)
  alone = _query(tower, [[3, 4]])
  # Beside a longer row (more padding for [3, 4]) and with older movies past the window.
  padded = _query(tower, [[3, 4], [1, 2, 5, 6]])
  np.testing.assert_allclose(padded[0], alone[0], rtol=1e-5, atol=1e-6)
  windowed = _query(tower, [[9, 8, 7, 1, 2, 5, 6], [1, 2, 5, 6]])
  np.testing.assert_allclose(windowed[0], windowed[1], rtol=1e-5, atol=1e-6)
  assert not np.allclose(padded[0], padded[1])  # and the movies matter


@pytest.mark.parametrize('encoder', ['gru', 'attention'])
def test_an_order_aware_encoder_tells_orders_apart_and_mean_does_not(encoder):
  assert not np.allclose(*_query(_tower(encoder), [[3, 4, 5], [5, 4, 3]]))
  np.testing.assert_allclose(*_query(_tower('mean'), [[3, 4, 5], [5, 4, 3]]), rtol=1e-5)


def test_the_user_id_moves_the_query_and_every_unknown_id_reads_one_row():
  num_users = 5
  tf.keras.utils.set_random_seed(0)
  tower = ContextTower(30, ModelConfig(kind='sequential', max_context_length=4, embedding_dim=8,
                                       layer_sizes=(8,), use_user_id=True),
                       num_user_ids=num_users)
  users = tf.constant([0, 1, num_users, num_users], tf.int64)  # two known, two unknown
  queries = _query(tower, [[3, 4]] * 4, **{f.USER_ID_INDEX: users})
  assert not np.allclose(queries[0], queries[1])
  np.testing.assert_allclose(queries[2], queries[3])
  # Training hides user_id_dropout (half) of the ids: those rows read the unknown row.
  trained = tower({f.CONTEXT_MOVIE_ID_INDICES: tf.ragged.constant([[3, 4]] * 200, tf.int64),
                   f.USER_ID_INDEX: tf.zeros([200], tf.int64)}, training=True).numpy()
  as_known = np.all(np.isclose(trained, queries[0], atol=1e-5), axis=1)
  as_unknown = np.all(np.isclose(trained, queries[2], atol=1e-5), axis=1)
  assert np.all(as_known | as_unknown)
  assert 60 < as_unknown.sum() < 140


def _every_position(tower, histories, labels):
  queries, next_movies, real = tower.every_position(
      {f.CONTEXT_MOVIE_ID_INDICES: tf.ragged.constant(histories, tf.int64),
       f.MOVIE_ID_INDEX: tf.constant(labels, tf.int64)})
  return queries.numpy(), next_movies.numpy(), real.numpy()


@pytest.mark.parametrize('encoder', HISTORY_ENCODERS)
def test_every_position_asks_each_position_for_the_next_movie_from_the_movies_up_to_it(encoder):
  tower = _tower(encoder)
  queries, next_movies, real = _every_position(tower, [[3, 4, 5], [3, 4, 6]], [7, 8])
  # Window of 4, left-padded: positions 1..3 are real; each asks for the movie after it.
  np.testing.assert_array_equal(real, [[False, True, True, True]] * 2)
  np.testing.assert_array_equal(next_movies[:, 1:], [[4, 5, 7], [4, 6, 8]])
  # Causal: the rows differ from position 3 on only.
  np.testing.assert_allclose(queries[0, 1:3], queries[1, 1:3], rtol=1e-5, atol=1e-6)
  assert not np.allclose(queries[0, 3], queries[1, 3])
  if encoder != 'attention':  # (attention's positions count back from the window's end)
    # Each position's query is the one the served tower gives the history up to it.
    for position, history in ((1, [3]), (2, [3, 4]), (3, [3, 4, 5])):
      np.testing.assert_allclose(queries[0, position], _query(tower, [history])[0],
                                 rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(queries[:, -1], _query(tower, [[3, 4, 5], [3, 4, 6]]),
                             rtol=1e-5, atol=1e-6)
