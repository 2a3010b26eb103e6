"""The Transform component's preprocessing_fn: vocabularies, timestamp buckets, z-scores.

Everything a model needs to turn raw strings into indices lives in the transform graph, so the
exported model takes raw features and the trainer reads vocabulary sizes from the transform
output instead of hard-coding them.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from components import features as f

DEFAULT_TIMESTAMP_BUCKETS = 1000
# One out-of-vocabulary bucket per vocabulary: unseen ids at serving time map to index
# vocab_size, which the embedding tables reserve.
NUM_OOV_BUCKETS = 1


def title_tokens(titles: tf.Tensor) -> tf.SparseTensor:
  """Lower-cased word tokens of each title, '(1995)' kept as a token: the year is a feature."""
  cleaned = tf.strings.regex_replace(tf.strings.lower(titles), r'[^a-z0-9()\' ]', ' ')
  return tf.strings.split(cleaned).to_sparse()


def _shared_features(inputs: Dict[str, Any], movie_vocabulary: tf.Tensor) -> Dict[str, Any]:
  """What both transforms output: the user index, the candidate tower's inputs (movie index,
  title tokens, genres), and the raw movie id, title, rating and timestamp passed through (the
  trainer builds the candidate catalogue, the rating head's starting biases and the serving
  fallback's recent popularity from them; a timeline example's timestamp is its next movie's)."""
  return {
      f.MOVIE_ID_INDEX: tft.apply_vocabulary(inputs[f.MOVIE_ID], movie_vocabulary,
                                             num_oov_buckets=NUM_OOV_BUCKETS),
      f.MOVIE_TITLE_TOKEN_INDICES: tft.compute_and_apply_vocabulary(
          title_tokens(inputs[f.MOVIE_TITLE]), vocab_filename=f.MOVIE_TITLE_TOKEN_VOCAB,
          num_oov_buckets=NUM_OOV_BUCKETS),
      f.MOVIE_GENRE_INDICES: tft.compute_and_apply_vocabulary(
          inputs[f.MOVIE_GENRES], vocab_filename=f.MOVIE_GENRE_VOCAB,
          num_oov_buckets=NUM_OOV_BUCKETS),
      f.USER_ID_INDEX: tft.compute_and_apply_vocabulary(
          inputs[f.USER_ID], vocab_filename=f.USER_ID_VOCAB, num_oov_buckets=NUM_OOV_BUCKETS),
      f.MOVIE_ID: tf.identity(inputs[f.MOVIE_ID]),
      f.MOVIE_TITLE: tf.identity(inputs[f.MOVIE_TITLE]),
      f.USER_RATING: tf.identity(inputs[f.USER_RATING]),
      f.TIMESTAMP: tf.identity(inputs[f.TIMESTAMP]),
  }


def preprocessing_fn(inputs: Dict[str, Any],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Maps raw rating features to model inputs (retrieval and multitask).

  Args:
    inputs: raw features as parsed with the curated schema: dense [batch] tensors, and a
      SparseTensor for movie_genres.
    custom_config: optional {'timestamp_buckets': int}.

  Returns:
    Index features for the embedding tables, timestamp bucket and z-score, and the
    pass-through features of _shared_features.
  """
  custom_config = custom_config or {}
  num_buckets = int(custom_config.get('timestamp_buckets', DEFAULT_TIMESTAMP_BUCKETS))
  timestamp = tf.cast(inputs[f.TIMESTAMP], tf.float32)
  movie_vocabulary = tft.vocabulary(inputs[f.MOVIE_ID], vocab_filename=f.MOVIE_ID_VOCAB)
  return {
      **_shared_features(inputs, movie_vocabulary),
      f.TIMESTAMP_BUCKET: tft.bucketize(timestamp, num_buckets=num_buckets),
      f.TIMESTAMP_Z: tft.scale_to_z_score(timestamp),
  }


def timeline_preprocessing_fn(inputs: Dict[str, Any],
                              custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Maps timeline examples (components/timelines.py) to the sequential model's inputs.

  One movie vocabulary covers the next movies and the context movies, so a movie seen only in
  contexts (a user's first) still has an index; the context becomes indices, oldest first;
  window_end and window_end_all pass through.
  """
  del custom_config  # nothing to configure
  context = inputs[f.CONTEXT_MOVIE_IDS]
  movie_vocabulary = tft.vocabulary(
      tf.concat([tf.reshape(inputs[f.MOVIE_ID], [-1]), context.values], axis=0),
      vocab_filename=f.MOVIE_ID_VOCAB)
  return {
      **_shared_features(inputs, movie_vocabulary),
      f.CONTEXT_MOVIE_ID_INDICES: tft.apply_vocabulary(context, movie_vocabulary,
                                                       num_oov_buckets=NUM_OOV_BUCKETS),
      # Which examples every-position training reads (components/timelines.py): the
      # Trainer's, and the refit's over train + eval.
      f.WINDOW_END: tf.identity(inputs[f.WINDOW_END]),
      f.WINDOW_END_ALL: tf.identity(inputs[f.WINDOW_END_ALL]),
  }
