"""Ratings files: the latest rating of a (user, movie) pair wins, and timestamps are bounded."""

import logging

import pytest

from components.ingest import movielens
from components.ingest.movielens import MovieLensFormatError, Rating
from tests.test_movielens_readers import ML100K_FILES, at, replace_file, write_dataset

EARLY, LATE = 881_250_949, 891_717_742  # 1997-12-04 and 1998-04-05


@pytest.fixture
def ml100k(tmp_path):
  return write_dataset(tmp_path / 'ml-100k', ML100K_FILES)


@pytest.fixture
def read_ratings(ml100k):
  """Writes u.data from (user, movie, rating, timestamp) rows and reads the ratings back."""
  def read(*rows):
    replace_file(ml100k, 'u.data', ''.join('\t'.join(map(str, row)) + '\n' for row in rows))
    return list(movielens.iter_ratings(ml100k))
  return read


def test_a_pair_rated_twice_keeps_the_rating_with_the_later_timestamp(read_ratings):
  assert read_ratings((1, 10, 2, LATE), (2, 20, 3, EARLY), (1, 10, 5, EARLY)) == [
      Rating('1', '10', 2.0, LATE), Rating('2', '20', 3.0, EARLY)]


def test_a_pair_rated_twice_at_the_same_time_keeps_the_later_line(read_ratings):
  assert read_ratings((1, 10, 2, EARLY), (1, 10, 5, EARLY)) == [Rating('1', '10', 5.0, EARLY)]


def test_dropped_duplicates_are_counted_in_one_warning_naming_the_file(
    ml100k, read_ratings, caplog):
  with caplog.at_level(logging.WARNING):
    read_ratings((1, 10, 2, EARLY), (2, 20, 3, EARLY), (1, 10, 4, LATE), (1, 10, 1, EARLY),
                 (2, 20, 5, LATE))
  [warning] = [record.getMessage() for record in caplog.records
               if record.levelno == logging.WARNING]
  assert warning.startswith(
      f"{ml100k / 'u.data'}: dropped 3 duplicate ratings of 2 (user, movie) pairs")
  assert "e.g. line 1 (user '1', movie '10') gave way to line 3" in warning


def test_a_file_without_duplicates_logs_no_warning(read_ratings, caplog):
  with caplog.at_level(logging.WARNING):
    read_ratings((1, 10, 2, EARLY), (1, 20, 3, EARLY))
  assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_timestamp_in_the_future_is_an_error_naming_file_line_and_field(read_ratings):
  with pytest.raises(MovieLensFormatError,
                     match=at('u.data', 2, 'timestamp 32503680000 (3000-01-01 00:00:00 UTC) '
                              'is after')):
    read_ratings((1, 10, 2, EARLY), (2, 20, 3, 32_503_680_000))


def test_a_timestamp_before_movielens_began_is_an_error(read_ratings):
  with pytest.raises(MovieLensFormatError,
                     match=at('u.data', 1, 'timestamp 86400 (1970-01-02 00:00:00 UTC) is before '
                              '1995-01-01 00:00:00 UTC, when MovieLens ratings begin')):
    read_ratings((1, 10, 2, 86_400))


def test_a_timestamp_in_milliseconds_is_named_as_such(read_ratings):
  with pytest.raises(MovieLensFormatError,
                     match='this looks like milliseconds \\(1997-12-04 .* in seconds\\)'):
    read_ratings((1, 10, 2, EARLY * 1000))

