"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported."""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pathlib

import pytest

from components.ingest import synthetic

# Small enough for a pipeline run in a couple of minutes on 2 cores, big enough to learn from.
SMALL = dict(num_users=150, num_movies=200, num_ratings=6000, seed=3)


@pytest.fixture(scope='session')
def small_dataset(tmp_path_factory) -> pathlib.Path:
  """A synthetic ml-100k-format folder shared by the pipeline tests (read-only)."""
  return synthetic.generate(tmp_path_factory.mktemp('data') / 'synthetic', **SMALL)
