"""Readers for the raw ml-100k and ml-1m files: parsed values, the join, and strict errors."""

import re

import pytest

from components import features
from components.ingest import movielens
from components.ingest.movielens import Movie, MovieLensFormatError, Rating, User

ML100K_FILES = {
    'u.data': '1\t10\t4\t881250949\n2\t20\t7\t891717742\n1\t20\t3.5\t878887116\n',
    'u.item': (
        '10|Café Society (1995)|01-Jan-1995||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|1|0|0|0|0\n'
        '20|Toy Story (1995)|01-Jan-1995||http://y|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n'),
    'u.user': '1|24|M|technician|85711\n2|53|F|other|94043\n',
}

ML1M_FILES = {
    'ratings.dat': '1::10::5::978300760\n2::20::1::978302109\n\n',
    'movies.dat': ("10::Café Society (1995)::Comedy|Romance\n"
                   "20::Toy Story (1995)::Animation|Children's\n"),
    'users.dat': '1::F::1::10::48067\n2::M::56::16::70072\n',
}


def write_dataset(folder, files):
  folder.mkdir(parents=True, exist_ok=True)
  for name, text in files.items():
    (folder / name).write_bytes(text.encode('latin-1'))
  return folder


@pytest.fixture
def ml100k(tmp_path):
  return write_dataset(tmp_path / 'ml-100k', ML100K_FILES)


@pytest.fixture
def ml1m(tmp_path):
  return write_dataset(tmp_path / 'ml-1m', ML1M_FILES)


def replace_file(folder, name, text):
  (folder / name).write_bytes(text.encode('latin-1'))


def at(name, line_no, message):
  """A regex for an error message: the file, the 1-based line, then what is wrong."""
  return re.escape(f'{name}:{line_no}: {message}')


# --------------------------------------------------------------------------------------------
# Good input.


def test_detect_format(ml100k, ml1m):
  assert movielens.detect_format(ml100k) == 'ml-100k'
  assert movielens.detect_format(str(ml1m)) == 'ml-1m'
  assert movielens.ratings_path(ml100k) == str(ml100k / 'u.data')
  assert movielens.ratings_path(ml1m) == str(ml1m / 'ratings.dat')


def test_detect_format_names_folder_and_expected_files(tmp_path):
  with pytest.raises(MovieLensFormatError, match='u.data.*ratings.dat') as caught:
    movielens.detect_format(tmp_path)
  assert str(tmp_path) in str(caught.value)
  assert '--data-dir' in str(caught.value) and '--dataset synthetic' in str(caught.value)


def test_ml100k_movies_decode_latin1_and_genre_flags(ml100k):
  movies = movielens.read_movies(ml100k)
  assert movies == {
      '10': Movie('10', 'Café Society (1995)', ('Comedy', 'Romance')),
      '20': Movie('20', 'Toy Story (1995)', ('Animation', "Children's", 'Comedy')),
  }


def test_ml100k_genre_names_come_from_u_genre_when_present(ml100k):
  names = ['unknown', 'Action', 'Adventure', 'Animation', 'Kids', 'Comedy', 'Crime',
           'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery',
           'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western']
  replace_file(ml100k, 'u.genre', ''.join(f'{n}|{i}\n' for i, n in enumerate(names)) + '\n')
  assert movielens.read_movies(ml100k)['20'].genres == ('Animation', 'Kids', 'Comedy')


def test_ml100k_users(ml100k):
  assert movielens.read_users(ml100k) == {
      '1': User('1', 24, 'M', 'technician', '85711'),
      '2': User('2', 53, 'F', 'other', '94043'),
  }


def test_ml100k_ratings_stream_in_file_order_without_range_checks(ml100k):
  ratings = movielens.iter_ratings(ml100k)
  assert next(ratings) == Rating('1', '10', 4.0, 881250949)
  # 7 is out of range: passed through for TFDV to flag, not dropped or clipped here.
  assert list(ratings) == [Rating('2', '20', 7.0, 891717742), Rating('1', '20', 3.5, 878887116)]


def test_ml100k_examples_join_movies_and_users(ml100k):
  examples = list(movielens.iter_examples(ml100k))
  assert len(examples) == 3
  assert examples[0] == {
      features.USER_ID: '1',
      features.MOVIE_ID: '10',
      features.MOVIE_TITLE: 'Café Society (1995)',
      features.MOVIE_GENRES: ['Comedy', 'Romance'],
      features.TIMESTAMP: 881250949,
      features.USER_RATING: 4.0,
      features.USER_AGE: 24,
      features.USER_GENDER: 'M',
      features.USER_OCCUPATION: 'technician',
      features.USER_ZIP_CODE: '85711',
  }
  assert examples[1][features.USER_OCCUPATION] == 'other'
  assert examples[1][features.MOVIE_GENRES] == ['Animation', "Children's", 'Comedy']


def test_ml1m_movies_users_and_occupation_codes(ml1m):
  assert movielens.read_movies(ml1m) == {
      '10': Movie('10', 'Café Society (1995)', ('Comedy', 'Romance')),
      '20': Movie('20', 'Toy Story (1995)', ('Animation', "Children's")),
  }
  assert movielens.read_users(ml1m) == {
      '1': User('1', 1, 'F', 'K-12 student', '48067'),
      '2': User('2', 56, 'M', 'self-employed', '70072'),
  }


def test_ml1m_examples(ml1m):
  examples = list(movielens.iter_examples(ml1m, fmt='ml-1m'))
  assert [(e[features.USER_ID], e[features.MOVIE_ID], e[features.USER_RATING]) for e in examples] \
      == [('1', '10', 5.0), ('2', '20', 1.0)]
  assert examples[1] == {
      features.USER_ID: '2',
      features.MOVIE_ID: '20',
      features.MOVIE_TITLE: 'Toy Story (1995)',
      features.MOVIE_GENRES: ['Animation', "Children's"],
      features.TIMESTAMP: 978302109,
      features.USER_RATING: 1.0,
      features.USER_AGE: 56,
      features.USER_GENDER: 'M',
      features.USER_OCCUPATION: 'self-employed',
      features.USER_ZIP_CODE: '70072',
  }


def test_empty_lines_and_crlf_are_tolerated(ml1m):
  replace_file(ml1m, 'ratings.dat', '1::10::5::978300760\r\n\r\n\n2::20::1::978302109\r\n')
  assert [r.timestamp for r in movielens.iter_ratings(ml1m)] == [978300760, 978302109]


def test_iter_ratings_is_lazy(ml100k):
  """A generator, not a list: a 25M-rating file must not become 25M Python objects at once."""
  ratings = movielens.iter_ratings(ml100k)
  assert iter(ratings) is ratings and not isinstance(ratings, (list, tuple))


def test_ml1m_movie_without_genres(ml1m):
  replace_file(ml1m, 'movies.dat', '10::Blank (2000)::\n')
  assert movielens.read_movies(ml1m)['10'].genres == ()


# --------------------------------------------------------------------------------------------
# Bad input: every case names the file and the line.


@pytest.mark.parametrize('text, line_no, message', [
    ('1\t10\t4\t881250949\n1 10 4 881250949\n', 2, 'expected 4 fields separated by tab, found 1'),
    ('1\t10\t4\n', 1, 'expected 4 fields separated by tab, found 3'),
    # A line holding only whitespace is not empty: it is reported, not skipped.
    ('1\t10\t4\t881250949\n \n', 2, 'expected 4 fields separated by tab, found 1'),
    ('1\t10\tfour\t881250949\n', 1, "rating 'four' is not a number"),
    ('1\t10\tnan\t881250949\n', 1, "rating 'nan' is not a finite number"),
    ('1\t10\t4\t8812509.5\n', 1, "timestamp '8812509.5' is not an integer"),
])
def test_bad_ml100k_rating_lines(ml100k, text, line_no, message):
  replace_file(ml100k, 'u.data', text)
  with pytest.raises(MovieLensFormatError, match=at('u.data', line_no, message)):
    list(movielens.iter_ratings(ml100k))


@pytest.mark.parametrize('text, line_no, message', [
    ('1::10::5::978300760\n1,10,5,978300760\n', 2, "expected 4 fields separated by '::'"),
    ('1::10::5:978300760\n', 1, "expected 4 fields separated by '::', found 3"),
    ('\n1::10::x::978300760\n', 2, "rating 'x' is not a number"),
    ('1::10::5::soon\n', 1, "timestamp 'soon' is not an integer"),
])
def test_bad_ml1m_rating_lines(ml1m, text, line_no, message):
  replace_file(ml1m, 'ratings.dat', text)
  with pytest.raises(MovieLensFormatError,
                     match=at('ratings.dat', line_no, message)):
    list(movielens.iter_examples(ml1m))


def test_bad_genre_flag(ml100k):
  lines = ML100K_FILES['u.item'].splitlines()
  replace_file(ml100k, 'u.item', lines[0] + '\n' + lines[1].replace('|1|1|1|', '|1|2|1|') + '\n')
  with pytest.raises(MovieLensFormatError,
                     match=at('u.item', 2, """genre flag for "Children's" is '2'""")):
    movielens.read_movies(ml100k)


def test_u_item_with_wrong_number_of_genre_columns(ml100k):
  replace_file(ml100k, 'u.item', '10|Short (1995)|01-Jan-1995||http://x|0|1\n')
  with pytest.raises(MovieLensFormatError,
                     match=at('u.item', 1, "expected 24 fields separated by '|', found 7")):
    movielens.read_movies(ml100k)


def test_u_genre_with_out_of_order_index(ml100k):
  replace_file(ml100k, 'u.genre', 'unknown|0\nAction|2\n')
  with pytest.raises(MovieLensFormatError,
                     match=at('u.genre', 2, 'expected genre index 1, found 2')):
    movielens.read_movies(ml100k)


@pytest.mark.parametrize('folder_fixture, name, text, line_no', [
    ('ml100k', 'u.item', ML100K_FILES['u.item'] + ML100K_FILES['u.item'].splitlines()[0] + '\n', 3),
    ('ml1m', 'movies.dat', '10::A (1995)::Comedy\n\n10::B (1995)::Drama\n', 3),
])
def test_duplicate_movie_id(request, folder_fixture, name, text, line_no):
  folder = request.getfixturevalue(folder_fixture)
  replace_file(folder, name, text)
  with pytest.raises(MovieLensFormatError,
                     match=at(name, line_no, "duplicate movie id '10' (first on line 1)")):
    movielens.read_movies(folder)


def test_duplicate_user_id(ml1m):
  replace_file(ml1m, 'users.dat', '1::F::1::10::48067\n1::M::25::1::11111\n')
  with pytest.raises(MovieLensFormatError, match=at('users.dat', 2, 'duplicate user id')):
    movielens.read_users(ml1m)


@pytest.mark.parametrize('text, message', [
    ('1::F::1::21::48067\n', 'occupation code 21 is not one of 0..20'),
    ('1::F::1::writer::48067\n', "occupation code 'writer' is not an integer"),
    ('1::F::young::1::48067\n', "age 'young' is not an integer"),
    ('1|F|1|1|48067\n', "expected 5 fields separated by '::', found 1"),
])
def test_bad_ml1m_user_lines(ml1m, text, message):
  replace_file(ml1m, 'users.dat', text)
  with pytest.raises(MovieLensFormatError, match=at('users.dat', 1, message)):
    movielens.read_users(ml1m)


def test_bad_ml100k_age(ml100k):
  replace_file(ml100k, 'u.user', '1|24|M|technician|85711\n2|fifty|F|other|94043\n')
  with pytest.raises(MovieLensFormatError, match=at('u.user', 2, "age 'fifty'")):
    movielens.read_users(ml100k)


@pytest.mark.parametrize('folder_fixture, ratings_file, ratings, line_no, message', [
    ('ml100k', 'u.data', '1\t10\t4\t881250949\n2\t99\t4\t881250949\n', 2,
     "movie id '99' is not in the movies"),
    ('ml100k', 'u.data', '1\t10\t4\t881250949\n\n7\t10\t4\t881250949\n', 3,
     "user id '7' is not in the users"),
    ('ml1m', 'ratings.dat', '1::10::4::978300760\n2::99::4::978300760\n', 2,
     "movie id '99' is not in the movies"),
])
def test_join_with_unknown_ids_names_the_rating_line(
    request, folder_fixture, ratings_file, ratings, line_no, message):
  folder = request.getfixturevalue(folder_fixture)
  replace_file(folder, ratings_file, ratings)
  examples = movielens.iter_examples(folder)
  assert next(examples)[features.USER_ID] == '1'
  with pytest.raises(MovieLensFormatError, match=at(ratings_file, line_no, message)):
    next(examples)


@pytest.mark.parametrize('folder_fixture, missing, read', [
    ('ml100k', 'u.item', movielens.read_movies),
    ('ml100k', 'u.user', movielens.read_users),
    ('ml100k', 'u.user', lambda folder: list(movielens.iter_examples(folder))),
    ('ml1m', 'movies.dat', movielens.read_movies),
    ('ml1m', 'users.dat', lambda folder: list(movielens.iter_examples(folder))),
])
def test_missing_file_names_it_and_says_what_to_do(request, folder_fixture, missing, read):
  folder = request.getfixturevalue(folder_fixture)
  (folder / missing).unlink()
  with pytest.raises(MovieLensFormatError, match=re.escape(str(folder / missing))) as caught:
    read(folder)
  assert '--data-dir' in str(caught.value) and '--dataset synthetic' in str(caught.value)


def test_missing_ratings_file_with_explicit_format(ml1m):
  with pytest.raises(MovieLensFormatError, match=re.escape(str(ml1m / 'u.data'))):
    movielens.iter_ratings(ml1m, fmt='ml-100k')


def test_error_carries_path_and_line(ml1m):
  replace_file(ml1m, 'ratings.dat', '1::10::5::978300760\n1::10::5\n')
  with pytest.raises(MovieLensFormatError) as caught:
    list(movielens.iter_ratings(ml1m))
  assert (caught.value.path, caught.value.line_no) == (str(ml1m / 'ratings.dat'), 2)
  assert isinstance(caught.value, ValueError)


def test_unknown_format_name(ml1m):
  with pytest.raises(ValueError, match='ml-20m'):
    movielens.read_movies(ml1m, fmt='ml-20m')
