"""A tiny SavedModel with our models' outputs, written in a second: for tests of the server's
HTTP and gRPC layers, which need no recommender.

serving_default answers movie_ids, movie_titles and scores [batch, K] as ours do. rows_seen
answers how many rows the model has run on (a variable of the process that loaded it), so a
test can tell that a refused request did no work, or which process answered; history takes a
2-D input as the sequential model does (context_movie_ids [batch, length]), for the bound on
values per row.
"""
import pathlib

import tensorflow as tf

K = 10


class TinyRecommender(tf.Module):
  """serving_default(user_id [batch]) -> K made-up movies per user; counts the rows it ran."""

  def __init__(self):
    super().__init__()
    self.rows = tf.Variable(0, dtype=tf.int64)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def serve(self, user_id):
    self.rows.assign_add(tf.size(user_id, out_type=tf.int64))
    batch = tf.size(user_id)
    ranks = tf.broadcast_to(tf.strings.as_string(tf.range(K)), [batch, K])
    movie_ids = tf.strings.join([tf.tile(user_id[:, None], [1, K]), ranks], '-')
    return {'movie_ids': movie_ids,
            'movie_titles': tf.strings.join([movie_ids, ' a movie title of some length (1999)']),
            'scores': tf.broadcast_to(tf.range(K, 0, -1, dtype=tf.float32), [batch, K])}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string,
                                              name='context_movie_ids')])
  def history(self, context_movie_ids):
    self.rows.assign_add(tf.shape(context_movie_ids, out_type=tf.int64)[0])
    return {'history_length': tf.fill(tf.shape(context_movie_ids)[:1],
                                      tf.shape(context_movie_ids)[1])}

  @tf.function(input_signature=[])
  def rows_seen(self):
    return {'rows_seen': self.rows.read_value()}


def save_tiny_model(base_path: pathlib.Path) -> pathlib.Path:
  """Writes version 1 under base_path; returns base_path."""
  model = TinyRecommender()
  tf.saved_model.save(model, str(base_path / '1'),
                      signatures={'serving_default': model.serve, 'history': model.history,
                                  'rows_seen': model.rows_seen})
  return base_path
