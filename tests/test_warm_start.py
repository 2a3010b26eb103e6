"""Warm start (components/model/warm_start.py): a new model starts from a previous one's
weights, each id table row by row by id while the vocabularies grow and reorder, on the real
towers. (Through the pipeline's Trainer with --warm-start: tests/test_pipeline.py.)"""

import numpy as np
import tensorflow as tf

from components import features as f
from components.model import warm_start
from components.model.config import ModelConfig
from components.model.towers import ContextTower


def test_carry_rows_moves_each_ids_row_and_keeps_padding_and_unknown_rows():
  old = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)  # padding, a, b, c, unknown
  new = -np.ones((6, 2), np.float32)                      # padding, d, c, a, b, unknown
  table = warm_start.carry_rows(old, [b'a', b'b', b'c'], new, [b'd', b'c', b'a', b'b'],
                                first_row=1)
  np.testing.assert_array_equal(table, [old[0], new[1], old[3], old[1], old[2], old[4]])


def _tower(movie_ids, config):
  """A built ContextTower (the sequential model's query tower) over a movie vocabulary."""
  tower = ContextTower(len(movie_ids), config)
  tower({f.CONTEXT_MOVIE_ID_INDICES: tf.ragged.constant([[0, 1]], dtype=tf.int64)})
  return tower


def _row(tower, movie_ids, movie_id):
  return tower.movie_embedding.embeddings.numpy()[1 + movie_ids.index(movie_id)]


def test_restore_carries_every_known_movie_to_its_new_row_and_copies_the_encoder(tmp_path):
  config = ModelConfig.tuned('sequential', embedding_dim=8, layer_sizes=(8,))
  old_ids = [b'10', b'20', b'30']
  new_ids = [b'40', b'30', b'10', b'20']  # a new movie, and the order of frequencies changed
  old = _tower(old_ids, config)
  warm_start.save([old], {f.MOVIE_ID_VOCAB: old_ids}, str(tmp_path))
  tf.keras.utils.set_random_seed(7)
  new = _tower(new_ids, config)
  fresh_row = _row(new, new_ids, b'40').copy()

  summary = warm_start.restore(new, 0, str(tmp_path), {f.MOVIE_ID_VOCAB: new_ids})

  for movie_id in old_ids:
    np.testing.assert_array_equal(_row(new, new_ids, movie_id), _row(old, old_ids, movie_id))
  np.testing.assert_array_equal(_row(new, new_ids, b'40'), fresh_row)
  for old_weight, new_weight in zip(old.encoder.weights, new.encoder.weights):
    np.testing.assert_array_equal(new_weight.numpy(), old_weight.numpy())
  assert summary['carried_ids'] == {f.MOVIE_ID_VOCAB: 3}
  assert summary['new_ids'] == {f.MOVIE_ID_VOCAB: 1}
  assert summary['fresh'] == []


def test_weights_whose_shape_changed_start_fresh_and_are_named(tmp_path):
  ids = [b'1', b'2']
  warm_start.save([_tower(ids, ModelConfig.tuned('sequential', embedding_dim=8,
                                                  layer_sizes=(8,)))],
                  {f.MOVIE_ID_VOCAB: ids}, str(tmp_path))
  wider = _tower(ids, ModelConfig.tuned('sequential', embedding_dim=8, layer_sizes=(16,)))
  summary = warm_start.restore(wider, 0, str(tmp_path), {f.MOVIE_ID_VOCAB: ids})
  assert summary['fresh'] and all('dense' in key for key in summary['fresh'])
  assert summary['carried_ids'] == {f.MOVIE_ID_VOCAB: 2}
