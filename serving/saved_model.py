"""Loads a pushed recommender SavedModel and asks it for top-k movies.

The serving model searches a ScaNN index, whose TensorFlow ops live in the scann package:
importing it registers them, which tf.saved_model.load needs.
"""
import os
import pathlib
from typing import Dict, List, Optional

import scann  # noqa: F401  (registers the ScaNN ops the serving signature uses)
import tensorflow as tf

from serving.recommendations import Answer, Request, top_k_rows


def versions(model_base_path) -> Dict[int, str]:
  """Version number -> folder, for the folders under a TF Serving model base path (local or
  gs://, s3://) that are named by a number and hold saved_model.pb: TF Serving's rule, and
  TFX's Pusher writes saved_model.pb last."""
  base = str(model_base_path)
  try:
    entries = tf.io.gfile.listdir(base)
  except tf.errors.NotFoundError:
    return {}
  found = {}
  for entry in (entry.rstrip('/') for entry in entries):
    path = os.path.join(base, entry)
    if (entry.isdigit() and int(entry) < 2**63
        and tf.io.gfile.exists(os.path.join(path, 'saved_model.pb'))):
      found[int(entry)] = path
  return found


def version_dirs(model_base_path) -> List[pathlib.Path]:
  """The version folders of a local model base path, oldest first."""
  return [pathlib.Path(path) for _, path in sorted(versions(model_base_path).items())]


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


def recommend(serving_fn, request: Request, k: Optional[int] = None) -> List[Answer]:
  """Top-k movies per query of the request (recommendations.make_request, with
  `input_names(serving_fn)`): for each, an Answer of [{'movie_id', 'title', 'score'}, ...],
  best first, and the strategy that answered it."""
  outputs = serving_fn(**{name: tf.constant(value) for name, value in request.inputs.items()})
  return top_k_rows({name: tensor.numpy() for name, tensor in outputs.items()}, k or 0)


def input_names(serving_fn) -> List[str]:
  """A loaded signature's input names."""
  return sorted(serving_fn.structured_input_signature[1])
