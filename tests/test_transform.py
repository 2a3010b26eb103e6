"""preprocessing_fn through TFT's Beam implementation on a tiny dataset."""
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata

from components import features as f
from components.transform import preprocessing_fn
from pipeline.config import CURATED_SCHEMA

TITLES = {b'1': b'Toy Story (1995)', b'2': b'Heat (1995)', b'3': b"Schindler's List (1993)"}
GENRES = {b'1': [b'Animation', b'Comedy'], b'2': [b'Action'], b'3': []}


def _rows():
  # User u1 rates 3 times, u2 twice, u3 once; movie 1 is rated most.
  ratings = [(b'u1', b'1'), (b'u1', b'2'), (b'u1', b'3'), (b'u2', b'1'), (b'u2', b'2'),
             (b'u3', b'1')]
  return [{f.USER_ID: user, f.MOVIE_ID: movie, f.MOVIE_TITLE: TITLES[movie],
           f.MOVIE_GENRES: GENRES[movie], f.TIMESTAMP: 1_000_000 + 1000 * i,
           f.USER_RATING: 4.0, f.USER_AGE: 30, f.USER_GENDER: b'F', f.USER_OCCUPATION: b'x',
           f.USER_ZIP_CODE: b'0'} for i, (user, movie) in enumerate(ratings)]


@pytest.fixture(scope='module')
def transformed():
  schema = text_format.Parse(open(CURATED_SCHEMA).read(), schema_pb2.Schema())
  out_dir = tempfile.mkdtemp()
  with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    (rows, _), transform_fn = (
        (_rows(), dataset_metadata.DatasetMetadata(schema))
        | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {'timestamp_buckets': 4}),
            output_record_batches=False))
    _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
  return rows, tft.TFTransformOutput(out_dir)


def test_vocabularies_are_ordered_by_frequency(transformed):
  rows, output = transformed
  assert output.vocabulary_by_name(f.USER_ID_VOCAB) == [b'u1', b'u2', b'u3']
  assert output.vocabulary_by_name(f.MOVIE_ID_VOCAB) == [b'1', b'2', b'3']
  assert output.vocabulary_size_by_name(f.MOVIE_GENRE_VOCAB) == 3
  assert [row[f.USER_ID_INDEX] for row in rows] == [0, 0, 0, 1, 1, 2]


def test_title_tokens_are_lower_case_words_with_the_year(transformed):
  _, output = transformed
  tokens = set(output.vocabulary_by_name(f.MOVIE_TITLE_TOKEN_VOCAB))
  assert {b'toy', b'story', b'(1995)', b'heat', b"schindler's", b'list', b'(1993)'} == tokens


def test_genres_and_titles_map_to_index_lists(transformed):
  rows, output = transformed
  genre_vocab = output.vocabulary_by_name(f.MOVIE_GENRE_VOCAB)
  by_movie = {row[f.MOVIE_ID]: row for row in rows}
  assert [genre_vocab[i] for i in by_movie[b'1'][f.MOVIE_GENRE_INDICES]] == GENRES[b'1']
  assert len(by_movie[b'3'][f.MOVIE_GENRE_INDICES]) == 0
  assert len(by_movie[b'3'][f.MOVIE_TITLE_TOKEN_INDICES]) == 3
  assert by_movie[b'2'][f.MOVIE_TITLE] == TITLES[b'2']  # passed through for the catalogue


def test_timestamps_are_bucketed_in_order_and_z_scored(transformed):
  rows, _ = transformed
  buckets = [row[f.TIMESTAMP_BUCKET] for row in rows]
  assert buckets == sorted(buckets) and 0 <= min(buckets) and max(buckets) <= 4
  assert len(set(buckets)) > 1
  z_scores = np.array([row[f.TIMESTAMP_Z] for row in rows])
  assert abs(z_scores.mean()) < 1e-4 and abs(z_scores.std() - 1) < 1e-3


def test_serving_time_transform_needs_only_the_query_features(transformed):
  _, output = transformed
  layer = output.transform_features_layer()
  result = layer({f.USER_ID: tf.constant([b'u2', b'stranger'])})
  # A known user gets its index, an unknown one the out-of-vocabulary index (vocab size).
  assert result[f.USER_ID_INDEX].numpy().tolist() == [1, 3]
