"""Readers for the CSV MovieLens family (ml-latest-small, ml-20m, ml-25m, ml-32m): headers,
RFC 4180 quoting, half stars, no users file, and the same strict errors as the older formats."""

import re

import pytest

from components import features
from components.ingest import movielens
from components.ingest.movielens import MovieLensFormatError

RATINGS = ('userId,movieId,rating,timestamp\n'
           '1,1,4.0,964982703\n'
           '1,3,4.5,964981247\n'
           '2,1,0.5,964982224\n')
MOVIES = ('movieId,title,genres\n'
          '1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
          '3,"American President, The (1995)",Comedy|Drama|Romance\n'
          '5,"Bride Wore ""Red"", The (1937)",(no genres listed)\n'
          '7,Amélie (2001),Comedy\n')


def write_csv_dataset(folder, ratings=RATINGS, movies=MOVIES, encoding='utf-8'):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / 'ratings.csv').write_bytes(ratings.encode(encoding))
  (folder / 'movies.csv').write_bytes(movies.encode(encoding))
  return folder


@pytest.fixture
def csv_dataset(tmp_path):
  return write_csv_dataset(tmp_path / 'ml-latest-small')


def at(name, line_no, message):
  return re.escape(f'{name}:{line_no}: {message}')


def test_a_folder_with_ratings_csv_is_the_csv_format_rated_in_half_stars(csv_dataset):
  assert movielens.detect_format(csv_dataset) == 'csv'
  assert movielens.RATING_SCALE_OF_FORMAT['csv'] == 'half-stars'
  assert {movielens.DATASET_FORMATS[name] for name in
          ('ml-latest-small', 'ml-20m', 'ml-25m', 'ml-32m')} == {'csv'}


def test_quoted_titles_keep_their_commas_and_quotes_and_no_genres_listed_is_none(csv_dataset):
  movies = movielens.read_movies(csv_dataset)
  assert movies['3'].title == 'American President, The (1995)'
  assert movies['3'].genres == ('Comedy', 'Drama', 'Romance')
  assert movies['5'].title == 'Bride Wore "Red", The (1937)'
  assert movies['5'].genres == ()
  assert movies['7'].title == 'Amélie (2001)'


def test_half_star_ratings_join_users_without_demographics(csv_dataset):
  examples = list(movielens.iter_examples(csv_dataset))
  assert [(e[features.USER_ID], e[features.MOVIE_ID], e[features.USER_RATING])
          for e in examples] == [('1', '1', 4.0), ('1', '3', 4.5), ('2', '1', 0.5)]
  assert examples[0][features.MOVIE_TITLE] == 'Toy Story (1995)'
  assert {(e[features.USER_AGE], e[features.USER_GENDER], e[features.USER_OCCUPATION],
           e[features.USER_ZIP_CODE]) for e in examples} == {(0, '', '', '')}


def test_a_byte_order_mark_and_crlf_line_ends_are_read_through(tmp_path):
  folder = write_csv_dataset(tmp_path / 'bom', ratings='\ufeff' + RATINGS.replace('\n', '\r\n'))
  assert len(list(movielens.iter_ratings(folder))) == 3


def test_a_wrong_header_names_the_file_and_line_one(tmp_path):
  folder = write_csv_dataset(tmp_path / 'noheader', ratings=RATINGS.split('\n', 1)[1])
  with pytest.raises(MovieLensFormatError, match=at(
      str(folder / 'ratings.csv'), 1, "expected the header line 'userId,movieId,rating,timestamp',"
      " found '1,1,4.0,964982703'")):
    list(movielens.iter_ratings(folder))


def test_a_file_of_only_its_header_is_refused(tmp_path):
  folder = write_csv_dataset(tmp_path / 'empty', ratings='userId,movieId,rating,timestamp\n')
  with pytest.raises(MovieLensFormatError, match='it holds only its header line'):
    list(movielens.iter_ratings(folder))


@pytest.mark.parametrize('line, message', [
    ('1,1,four,964982703', "rating 'four' is not a number"),
    ('1,1,4.0', 'expected 4 fields separated by \',\', found 3'),
    ('1,1,4.0,96498270300', 'timestamp 96498270300'),
])
def test_a_bad_ratings_line_is_named_by_file_and_line(tmp_path, line, message):
  folder = write_csv_dataset(tmp_path / 'bad', ratings=RATINGS + line + '\n')
  with pytest.raises(MovieLensFormatError, match=at(str(folder / 'ratings.csv'), 5, message)):
    list(movielens.iter_ratings(folder))


def test_a_title_with_an_unclosed_quote_is_named_by_file_and_line(tmp_path):
  folder = write_csv_dataset(tmp_path / 'quote', movies=MOVIES + '9,"Broken (1990),Drama\n')
  with pytest.raises(MovieLensFormatError, match=at(str(folder / 'movies.csv'), 6,
                                                     'bad CSV quoting')):
    movielens.read_movies(folder)
