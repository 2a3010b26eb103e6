"""The ratings file read in byte ranges, in parallel, gives what one worker reading it whole
gives: the same examples, and for a bad file the same error at the same line."""

import logging

import re

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
import pytest
import tensorflow as tf

from components import features as f
from components.example_batches import encode_examples
from components.ingest import byte_ranges, movielens
from tests.test_csv_readers import MOVIES as CSV_MOVIES, write_csv_dataset
from tests.test_movielens_readers import ML100K_FILES, ML1M_FILES, write_dataset

# Small enough that most lines straddle two ranges, and every file has several.
RANGE_BYTES = 23

# A CSV ratings file with a byte-order mark, CRLF line ends, a blank line, a pair rated twice
# (the later rating on an earlier line: the timestamp decides) and half stars.
CSV_RATINGS = ('\ufeffuserId,movieId,rating,timestamp\r\n'
               '1,1,4.0,964982703\r\n'
               '1,3,4.5,964981247\r\n'
               '\r\n'
               '2,1,0.5,964982224\r\n'
               '1,1,3.5,964982000\r\n'
               '2,5,2.0,964983000\r\n'
               '3,7,5.0,964984000\r\n')


def reference_example(row) -> bytes:
  """One joined row of movielens.iter_examples as the tf.Example the pipeline must write."""
  feature = {}
  for name in f.RAW_STRING_FEATURES:
    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[name].encode()]))
  for name in f.RAW_STRING_LIST_FEATURES:
    feature[name] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[value.encode() for value in row[name]]))
  for name in f.RAW_INT_FEATURES:
    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[name])]))
  for name in f.RAW_FLOAT_FEATURES:
    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(row[name])]))
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString(deterministic=True)


def one_worker(folder):
  return sorted(reference_example(row) for row in movielens.iter_examples(folder))


def in_ranges(folder, expected=(), range_bytes=RANGE_BYTES):
  """Runs a Beam pipeline reading folder in byte ranges; fails unless it gives expected (the
  serialized examples, in any order)."""
  with beam.Pipeline() as pipeline:
    ratings = pipeline | byte_ranges.ReadRatingBatches(str(folder), range_bytes)  # pylint: disable=no-value-for-parameter
    examples = (ratings.batches
                | beam.FlatMap(encode_examples)
                | beam.Map(lambda example: tf.train.Example.FromString(
                    example).SerializeToString(deterministic=True)))
    assert_that(examples, equal_to(list(expected)))


@pytest.fixture
def csv_dataset(tmp_path):
  return write_csv_dataset(tmp_path / 'csv', ratings=CSV_RATINGS)


@pytest.mark.parametrize('files', [ML100K_FILES, ML1M_FILES], ids=['ml-100k', 'ml-1m'])
def test_ranges_give_the_one_workers_examples(tmp_path, files):
  folder = write_dataset(tmp_path / 'data', files)
  in_ranges(folder, one_worker(folder))


def test_ranges_give_the_one_workers_examples_of_a_csv_file_with_duplicates(csv_dataset):
  expected = one_worker(csv_dataset)
  assert len(expected) == 5
  in_ranges(csv_dataset, expected)
  in_ranges(csv_dataset, expected, range_bytes=1 << 20)  # one range


def test_the_duplicate_warning_is_the_one_workers(csv_dataset, caplog):
  with caplog.at_level(logging.WARNING):
    expected = one_worker(csv_dataset)
    one = [record.getMessage() for record in caplog.records if 'duplicate' in record.getMessage()]
    caplog.clear()
    in_ranges(csv_dataset, expected)
    ranged = [record.getMessage() for record in caplog.records
              if 'duplicate' in record.getMessage()]
  assert one and ranged == one


def test_line_numbers_count_every_line_before_the_range(tmp_path):
  folder = write_dataset(tmp_path / 'data', ML1M_FILES)
  ranges = byte_ranges.byte_ranges(str(folder / 'ratings.dat'), RANGE_BYTES)
  newlines = dict(byte_ranges.count_newlines(byte_range) for byte_range in ranges)
  numbered = [line_no for byte_range in ranges
              for line_no, _ in byte_ranges._raw_lines(  # pylint: disable=protected-access
                  byte_range, sum(newlines[i] for i in range(byte_range.index)))]
  assert numbered == [1, 2, 3]


BAD_CSV_FILES = {
    'two bad lines, the first wins': CSV_RATINGS.replace('2,5,2.0', '2,5,bad') + '1,1\n',
    'no header': CSV_RATINGS.split('\r\n', 1)[1],
    'a header line later on': CSV_RATINGS + 'userId,movieId,rating,timestamp\n',
    'only the header': 'userId,movieId,rating,timestamp\n\n',
    'empty': '',
    'a timestamp in milliseconds': CSV_RATINGS + '5,1,3.0,964982703000\n',
    'mixed encodings': None,  # written below: UTF-8 then latin-1 bytes
    'an unknown movie, twice': CSV_RATINGS + '6,99,3.0,964982703\n6,98,3.0,964982704\n',
}


@pytest.mark.parametrize('case', sorted(BAD_CSV_FILES))
def test_a_bad_file_fails_at_the_one_workers_line_with_its_message(tmp_path, case):
  folder = write_csv_dataset(tmp_path / 'bad', movies=CSV_MOVIES,
                             ratings=BAD_CSV_FILES[case] or '')
  if case == 'mixed encodings':
    (folder / 'ratings.csv').write_bytes(
        CSV_RATINGS.encode('utf-8') + '7,7,3.0,964982703 é\n'.encode('utf-8')
        + '8,7,3.0,964982703 é\n'.encode('latin-1'))
  with pytest.raises(movielens.MovieLensFormatError) as one:
    list(movielens.iter_examples(folder))
  with pytest.raises(movielens.MovieLensFormatError) as ranged:
    in_ranges(folder)
  assert without_reading_time(str(one.value)) in without_reading_time(str(ranged.value))


def without_reading_time(message):
  """The latest timestamp allowed is the time of reading plus a day: it moves between reads."""
  return re.sub(r'after \S+ \S+ UTC, the time of reading', 'after ..., the time of reading',
                message)
