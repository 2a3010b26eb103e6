"""Readers on a URI (gs://, s3://... in production): TensorFlow's in-memory ram:// file system."""
import os

import tensorflow as tf

from components.ingest import movielens


def test_readers_read_a_dataset_through_tensorflow_file_systems(small_dataset):
  remote = 'ram://movielens-test/ml-100k'
  for name in os.listdir(small_dataset):
    tf.io.gfile.copy(str(small_dataset / name), f'{remote}/{name}', overwrite=True)
  assert movielens.detect_format(remote) == 'ml-100k'
  assert movielens.ratings_path(remote) == f'{remote}/u.data'
  local_rows = list(movielens.iter_examples(small_dataset))
  assert list(movielens.iter_examples(remote)) == local_rows
