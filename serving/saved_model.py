"""Loads a pushed recommender SavedModel and asks it for top-k movies.

The serving model searches a ScaNN index, whose TensorFlow ops live in the scann package:
importing it registers them, which tf.saved_model.load needs.
"""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import pathlib
from typing import Dict, List, Optional, Sequence

import scann  # noqa: F401  (registers the ScaNN ops the serving signature uses)
import tensorflow as tf

from components import features as f


def version_dirs(model_base_path) -> List[pathlib.Path]:
  """Complete version folders under a TF Serving model base path, oldest first."""
  base = pathlib.Path(model_base_path)
  if not base.is_dir():
    return []
  versions = [path for path in base.iterdir()
              if path.name.isdigit() and (path / 'saved_model.pb').exists()]
  return sorted(versions, key=lambda path: int(path.name))


def latest_version_dir(model_base_path) -> pathlib.Path:
  versions = version_dirs(model_base_path)
  if not versions:
    raise FileNotFoundError(
        f'no model version under {model_base_path}: run the pipeline first (make demo), '
        'or check that the model was blessed and pushed')
  return versions[-1]


def load(model_dir) -> tf.types.experimental.ConcreteFunction:
  """The serving_default signature of a SavedModel folder."""
  return tf.saved_model.load(str(model_dir)).signatures['serving_default']


def recommend(serving_fn, user_ids: Sequence[str], k: Optional[int] = None,
              timestamps: Optional[Sequence[int]] = None) -> List[List[Dict[str, object]]]:
  """Top-k movies per user: [{'movie_id', 'title', 'score'}, ...] for each user, best first."""
  inputs = {f.USER_ID: tf.constant(list(user_ids), tf.string)}
  if f.TIMESTAMP in serving_fn.structured_input_signature[1]:
    if timestamps is None:
      raise ValueError('this model uses timestamps: pass one per user')
    inputs[f.TIMESTAMP] = tf.constant(list(timestamps), tf.int64)
  outputs = serving_fn(**inputs)
  ids = outputs[f.OUTPUT_MOVIE_IDS].numpy()
  titles = outputs[f.OUTPUT_MOVIE_TITLES].numpy()
  scores = outputs[f.OUTPUT_SCORES].numpy()
  k = k or ids.shape[1]
  return [[{'movie_id': ids[row, rank].decode(), 'title': titles[row, rank].decode(),
            'score': float(scores[row, rank])} for rank in range(min(k, ids.shape[1]))]
          for row in range(len(user_ids))]
