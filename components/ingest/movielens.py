"""Readers for the raw GroupLens MovieLens formats (ml-100k and ml-1m).

The readers are strict on purpose: every malformed line raises MovieLensFormatError naming the
file and the 1-based line, so a broken download or a hand-edited file is caught here rather than
turning into silently missing examples later. Value ranges (a rating of 7, an odd gender) are
*not* checked: those are data-validation anomalies that TFDV reports against the schema.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterator, Mapping, TypeVar, Union

from components import features

PathLike = Union[str, os.PathLike]

FORMATS = ('ml-100k', 'ml-1m')

# Which file holds what, per format; the synthetic generator writes the same names.
FILE_NAMES: Mapping[str, Mapping[str, str]] = {
    'ml-100k': {'ratings': 'u.data', 'movies': 'u.item', 'users': 'u.user', 'genres': 'u.genre'},
    'ml-1m': {'ratings': 'ratings.dat', 'movies': 'movies.dat', 'users': 'users.dat'},
}

# Field separators, per format and file kind.
_SEPARATORS: Mapping[str, Mapping[str, str]] = {
    'ml-100k': {'ratings': '\t', 'movies': '|', 'users': '|', 'genres': '|'},
    'ml-1m': {'ratings': '::', 'movies': '::', 'users': '::'},
}

# The genre columns of u.item, in order; used when u.genre is absent (it is in the real archive).
ML100K_GENRES = (
    'unknown', 'Action', 'Adventure', 'Animation', "Children's", 'Comedy', 'Crime', 'Documentary',
    'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery', 'Romance', 'Sci-Fi',
    'Thriller', 'War', 'Western',
)
_ML100K_MOVIE_FIELDS_BEFORE_GENRES = 5  # id, title, release date, video release date, IMDb URL

# users.dat stores occupations as codes; the ml-1m README gives their meaning.
ML1M_OCCUPATIONS = (
    'other or not specified', 'academic/educator', 'artist', 'clerical/admin',
    'college/grad student', 'customer service', 'doctor/health care', 'executive/managerial',
    'farmer', 'homemaker', 'K-12 student', 'lawyer', 'programmer', 'retired', 'sales/marketing',
    'scientist', 'self-employed', 'technician/engineer', 'tradesman/craftsman', 'unemployed',
    'writer',
)

_OFFLINE_HINT = (
    'point --data-dir at an extracted MovieLens folder (one holding u.data, u.item, u.user '
    'or ratings.dat, movies.dat, users.dat), or run with --dataset synthetic')


class MovieLensFormatError(ValueError):
  """Raw MovieLens input that cannot be read; the message names the file (and line)."""

  def __init__(self, message: str, *, path: PathLike | None = None,
               line_no: int | None = None):
    super().__init__(message)
    self.path = path
    self.line_no = line_no

  @classmethod
  def at_line(cls, path: PathLike, line_no: int, what: str) -> 'MovieLensFormatError':
    return cls(f'{path}:{line_no}: {what}', path=path, line_no=line_no)


@dataclasses.dataclass(frozen=True)
class Movie:
  movie_id: str
  title: str
  genres: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class User:
  user_id: str
  age: int  # years in ml-100k, the age-group code (1, 18, 25, ...) in ml-1m
  gender: str
  occupation: str
  zip_code: str


@dataclasses.dataclass(frozen=True)
class Rating:
  user_id: str
  movie_id: str
  rating: float
  timestamp: int


# --------------------------------------------------------------------------------------------
# Locating files.


def _is_uri(path: str) -> bool:
  return '://' in path


def is_file(path: str) -> bool:
  """A local path, or a URI TensorFlow's file systems read (gs://, s3://, hdfs://)."""
  if _is_uri(path):
    import tensorflow as tf  # only for remote data: local runs keep the CLI's start fast
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)
  return os.path.isfile(path)


def _open_binary(path: str):
  if _is_uri(path):
    import tensorflow as tf
    return tf.io.gfile.GFile(path, 'rb')
  return open(path, 'rb')


def detect_format(data_dir: PathLike) -> str:
  """Tells the formats apart by their ratings file, so callers need not say which they have."""
  folder = os.fspath(data_dir)
  for fmt in FORMATS:
    if is_file(_path_in(folder, FILE_NAMES[fmt]['ratings'])):
      return fmt
  expected = ' or '.join(f"{FILE_NAMES[fmt]['ratings']} ({fmt})" for fmt in FORMATS)
  raise MovieLensFormatError(
      f'{folder}: missing MovieLens ratings file: expected {expected}; {_OFFLINE_HINT}',
      path=folder)


def ratings_path(data_dir: PathLike, fmt: str | None = None) -> str:
  """The ratings file (u.data or ratings.dat), e.g. for ExampleGen to fingerprint."""
  return _data_file(data_dir, _resolve_format(data_dir, fmt), 'ratings')


def _resolve_format(data_dir: PathLike, fmt: str | None) -> str:
  if fmt is None:
    return detect_format(data_dir)
  if fmt not in FORMATS:
    raise ValueError(f'unknown MovieLens format {fmt!r}; expected one of {FORMATS}')
  return fmt


def _path_in(folder: str, name: str) -> str:
  """Joins without normalising, so 'gs://bucket' keeps its double slash."""
  return folder.rstrip('/') + '/' + name


def _data_file(data_dir: PathLike, fmt: str, kind: str) -> str:
  return _path_in(os.fspath(data_dir), FILE_NAMES[fmt][kind])


def _require_file(path: str, fmt: str, kind: str) -> None:
  if not is_file(path):
    raise MovieLensFormatError(
        f'{path}: missing {kind} file {os.path.basename(path)} of the {fmt} format; '
        f'{_OFFLINE_HINT}',
        path=path)


# --------------------------------------------------------------------------------------------
# Splitting lines: the one place that turns bytes into fields and reports bad lines.


@dataclasses.dataclass(frozen=True)
class _Record:
  """One non-empty line split into fields, able to say where it came from when it is wrong."""
  path: str
  line_no: int
  fields: list[str]

  def error(self, what: str) -> MovieLensFormatError:
    return MovieLensFormatError.at_line(self.path, self.line_no, what)

  def integer(self, index: int, name: str) -> int:
    value = self.fields[index]
    try:
      return int(value)
    except ValueError:
      raise self.error(f'{name} {value!r} is not an integer') from None

  def number(self, index: int, name: str) -> float:
    value = self.fields[index]
    try:
      parsed = float(value)
    except ValueError:
      raise self.error(f'{name} {value!r} is not a number') from None
    if not math.isfinite(parsed):
      raise self.error(f'{name} {value!r} is not a finite number')
    return parsed


def _separator_name(separator: str) -> str:
  return 'tab' if separator == '\t' else repr(separator)


def _split_records(path: str, separator: str, num_fields: int) -> Iterator[_Record]:
  """Streams the non-empty lines of a latin-1 file as records of exactly num_fields fields.

  Lines end at '\\n' only (a stray '\\r' inside a title must not split it); a trailing '\\r'
  from CRLF files is dropped. Completely empty lines are skipped; anything else that does not
  split into num_fields fields is an error, because dropping it would lose data silently.
  """
  with _open_binary(path) as lines:
    for line_no, raw in enumerate(lines, start=1):
      line = raw.decode('latin-1').rstrip('\n')
      if line.endswith('\r'):
        line = line[:-1]
      if not line:
        continue
      fields = line.split(separator)
      if len(fields) != num_fields:
        raise MovieLensFormatError.at_line(
            path, line_no,
            f'expected {num_fields} fields separated by {_separator_name(separator)}, '
            f'found {len(fields)}')
      yield _Record(path, line_no, fields)


def _records(data_dir: PathLike, fmt: str, kind: str, num_fields: int) -> Iterator[_Record]:
  path = _data_file(data_dir, fmt, kind)
  _require_file(path, fmt, kind)  # checked eagerly by callers that are not generators
  return _split_records(path, _SEPARATORS[fmt][kind], num_fields)


_Item = TypeVar('_Item')


def _index_by_id(records: Iterator[_Record], parse: Callable[[_Record], _Item],
                 id_of: Callable[[_Item], str], kind: str) -> dict[str, _Item]:
  """Builds id -> item, refusing duplicate ids (a later line would silently replace an earlier)."""
  items: dict[str, _Item] = {}
  first_line: dict[str, int] = {}
  for record in records:
    item = parse(record)
    item_id = id_of(item)
    if item_id in items:
      raise record.error(
          f'duplicate {kind} id {item_id!r} (first on line {first_line[item_id]})')
    items[item_id] = item
    first_line[item_id] = record.line_no
  return items


# --------------------------------------------------------------------------------------------
# Movies.


def read_movies(data_dir: PathLike, fmt: str | None = None) -> dict[str, Movie]:
  """Movie id -> Movie, with genres as names in file order."""
  fmt = _resolve_format(data_dir, fmt)
  if fmt == 'ml-100k':
    genre_names = _read_ml100k_genre_names(data_dir)
    num_fields = _ML100K_MOVIE_FIELDS_BEFORE_GENRES + len(genre_names)
    parse = lambda record: _parse_ml100k_movie(record, genre_names)  # noqa: E731
  else:
    num_fields, parse = 3, _parse_ml1m_movie
  records = _records(data_dir, fmt, 'movies', num_fields)
  return _index_by_id(records, parse, lambda movie: movie.movie_id, 'movie')


def _read_ml100k_genre_names(data_dir: PathLike) -> tuple[str, ...]:
  """Genre column names from u.genre (`name|index`), else the documented built-in list."""
  path = _data_file(data_dir, 'ml-100k', 'genres')
  if not is_file(path):
    return ML100K_GENRES
  names = []
  for record in _split_records(path, _SEPARATORS['ml-100k']['genres'], 2):
    index = record.integer(1, 'genre index')
    if index != len(names):
      raise record.error(f'expected genre index {len(names)}, found {index}')
    names.append(record.fields[0])
  if not names:
    raise MovieLensFormatError(f'{path}: no genres listed', path=path)
  return tuple(names)


def _parse_ml100k_movie(record: _Record, genre_names: tuple[str, ...]) -> Movie:
  flags = record.fields[_ML100K_MOVIE_FIELDS_BEFORE_GENRES:]
  genres = []
  for name, flag in zip(genre_names, flags):
    if flag not in ('0', '1'):
      raise record.error(f'genre flag for {name!r} is {flag!r}, expected 0 or 1')
    if flag == '1':
      genres.append(name)
  return Movie(movie_id=record.fields[0], title=record.fields[1], genres=tuple(genres))


def _parse_ml1m_movie(record: _Record) -> Movie:
  movie_id, title, genre_field = record.fields
  genres = tuple(genre_field.split('|')) if genre_field else ()
  return Movie(movie_id=movie_id, title=title, genres=genres)


# --------------------------------------------------------------------------------------------
# Users.


def read_users(data_dir: PathLike, fmt: str | None = None) -> dict[str, User]:
  """User id -> User; ml-1m occupation codes become the README's text."""
  fmt = _resolve_format(data_dir, fmt)
  parse = _parse_ml100k_user if fmt == 'ml-100k' else _parse_ml1m_user
  records = _records(data_dir, fmt, 'users', 5)
  return _index_by_id(records, parse, lambda user: user.user_id, 'user')


def _parse_ml100k_user(record: _Record) -> User:
  user_id, _, gender, occupation, zip_code = record.fields
  return User(user_id=user_id, age=record.integer(1, 'age'), gender=gender,
              occupation=occupation, zip_code=zip_code)


def _parse_ml1m_user(record: _Record) -> User:
  user_id, gender, _, _, zip_code = record.fields
  code = record.integer(3, 'occupation code')
  if not 0 <= code < len(ML1M_OCCUPATIONS):
    raise record.error(
        f'occupation code {code} is not one of 0..{len(ML1M_OCCUPATIONS) - 1}')
  return User(user_id=user_id, age=record.integer(2, 'age'), gender=gender,
              occupation=ML1M_OCCUPATIONS[code], zip_code=zip_code)


# --------------------------------------------------------------------------------------------
# Ratings and joined examples.


def iter_ratings(data_dir: PathLike, fmt: str | None = None) -> Iterator[Rating]:
  """Streams ratings in file order; the whole file is never held in memory."""
  return (rating for _, rating in _iter_numbered_ratings(data_dir, fmt))


def _iter_numbered_ratings(data_dir: PathLike,
                           fmt: str | None) -> Iterator[tuple[_Record, Rating]]:
  """Ratings with their records, so a join failure can name the line it came from."""
  fmt = _resolve_format(data_dir, fmt)
  records = _records(data_dir, fmt, 'ratings', 4)  # both formats: user, movie, rating, time
  return ((record, _parse_rating(record)) for record in records)


def _parse_rating(record: _Record) -> Rating:
  return Rating(user_id=record.fields[0], movie_id=record.fields[1],
                rating=record.number(2, 'rating'),
                timestamp=record.integer(3, 'timestamp'))


def iter_examples(data_dir: PathLike, fmt: str | None = None) -> Iterator[dict]:
  """Ratings joined with their movie and user, keyed by the raw feature names of features.py.

  Movies and users are read up front (they are small); ratings stream.
  """
  fmt = _resolve_format(data_dir, fmt)
  movies = read_movies(data_dir, fmt)
  users = read_users(data_dir, fmt)
  numbered_ratings = _iter_numbered_ratings(data_dir, fmt)
  return (_join(record, rating, movies, users) for record, rating in numbered_ratings)


def _join(record: _Record, rating: Rating, movies: Mapping[str, Movie],
          users: Mapping[str, User]) -> dict:
  movie = movies.get(rating.movie_id)
  if movie is None:
    raise record.error(f'movie id {rating.movie_id!r} is not in the movies file')
  user = users.get(rating.user_id)
  if user is None:
    raise record.error(f'user id {rating.user_id!r} is not in the users file')
  return {
      features.USER_ID: rating.user_id,
      features.MOVIE_ID: rating.movie_id,
      features.MOVIE_TITLE: movie.title,
      features.MOVIE_GENRES: list(movie.genres),
      features.TIMESTAMP: rating.timestamp,
      features.USER_RATING: rating.rating,
      features.USER_AGE: user.age,
      features.USER_GENDER: user.gender,
      features.USER_OCCUPATION: user.occupation,
      features.USER_ZIP_CODE: user.zip_code,
  }
