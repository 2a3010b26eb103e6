"""Readers for the raw GroupLens MovieLens formats: ml-100k, ml-1m and the CSV family.

The CSV family (ml-latest-small, ml-20m, ml-25m, ml-32m): ratings.csv and movies.csv, each with
a header line (checked), RFC 4180 quoting (titles holding commas are quoted), half-star ratings,
and no users file (users are the ids the ratings name, without demographics).

The readers are strict on purpose: every malformed line raises MovieLensFormatError naming the
file and the 1-based line, so a broken download or a hand-edited file is caught here rather than
turning into silently missing examples later. Value ranges (a rating of 7, an odd gender) are
*not* checked: those are data-validation anomalies that TFDV reports against the schema.

Rules the readers apply to every dataset (docs/usage.md's "Data" section states them too):

* Encoding. GroupLens files are latin-1; files re-saved by an editor or a notebook are often
  UTF-8, sometimes with a byte-order mark. Each file is read as UTF-8 or latin-1, decided by
  its first non-ASCII line (see _LineDecoder for why that test is safe); a leading UTF-8 BOM is
  dropped (it would otherwise become part of the first user id); a file mixing both encodings,
  or in UTF-16, is an error rather than mojibake ('MisÃ©rables').
* Empty files. A ratings, movies or users file with no records (0 bytes, or blank lines only)
  is an error naming the file: a pipeline over 0 examples fails much later and far less clearly.
* Duplicate ratings. When a (user, movie) pair is rated more than once, the latest rating is
  kept: the greatest timestamp, and on equal timestamps the later line. The others are dropped
  with one warning per file that counts them and names an example line. To know which is
  latest, a ratings file is held until its last line as columns, 32 bytes a rating. (Duplicate
  movie or user ids in the movies and users files stay errors: there is no "latest" to prefer.)
* Timestamps (seconds since 1970, UTC) must lie in [EARLIEST_TIMESTAMP, now + FUTURE_SLACK]:
  MovieLens ratings begin in 1995 (ml-25m's first is 1995-01-09; ml-100k starts 1997-09,
  the synthetic data too) and none can come from the future; a day of slack covers clocks and
  time zones. A value outside is an error naming the file, line and field; one that fits
  when divided by 1000 is reported as milliseconds.
"""

from __future__ import annotations

import array
import csv
import dataclasses
import datetime
import math
import os
import time
from typing import Callable, Iterator, Mapping, TypeVar, Union

import absl.logging
import numpy as np

from components import features

PathLike = Union[str, os.PathLike]

# The raw formats: GroupLens' two older ones, and the CSV family of today's releases
# (ml-latest-small, ml-20m, ml-25m, ml-32m), which has no users file and rates in half stars.
FORMATS = ('ml-100k', 'ml-1m', 'csv')

# The format of each published dataset (components/ingest/download.py fetches them).
DATASET_FORMATS: Mapping[str, str] = {
    'ml-100k': 'ml-100k', 'ml-1m': 'ml-1m',
    'ml-latest-small': 'csv', 'ml-20m': 'csv', 'ml-25m': 'csv', 'ml-32m': 'csv',
}

# Which file holds what, per format; the synthetic generator writes the same names.
FILE_NAMES: Mapping[str, Mapping[str, str]] = {
    'ml-100k': {'ratings': 'u.data', 'movies': 'u.item', 'users': 'u.user', 'genres': 'u.genre'},
    'ml-1m': {'ratings': 'ratings.dat', 'movies': 'movies.dat', 'users': 'users.dat'},
    'csv': {'ratings': 'ratings.csv', 'movies': 'movies.csv'},
}

# Field separators, per format and file kind.
SEPARATORS: Mapping[str, Mapping[str, str]] = {
    'ml-100k': {'ratings': '\t', 'movies': '|', 'users': '|', 'genres': '|'},
    'ml-1m': {'ratings': '::', 'movies': '::', 'users': '::'},
    'csv': {'ratings': ',', 'movies': ','},
}

# The CSV family's header lines, checked and skipped.
CSV_HEADERS: Mapping[str, str] = {
    'ratings': 'userId,movieId,rating,timestamp',
    'movies': 'movieId,title,genres',
}
CSV_NO_GENRES = '(no genres listed)'

# The stars a rating can take, per format (features.RATING_SCALES): the schema's rating domain,
# the multitask model's clipping and --min-rating follow it.
RATING_SCALE_OF_FORMAT: Mapping[str, str] = {
    'ml-100k': 'whole-stars', 'ml-1m': 'whole-stars', 'csv': 'half-stars',
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

# Timestamp bounds, seconds since 1970 UTC (see the module docstring).
EARLIEST_TIMESTAMP = 788_918_400  # 1995-01-01 00:00 UTC: before the first MovieLens rating
FUTURE_SLACK_SECONDS = 24 * 3600  # the latest timestamp accepted is the time of reading + this

_OFFLINE_HINT = (
    'point --data-dir at an extracted MovieLens folder (one holding u.data, u.item, u.user, '
    'or ratings.dat, movies.dat, users.dat, or ratings.csv, movies.csv), or run with '
    '--dataset synthetic')


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
  age: int  # years in ml-100k, the age-group code (1, 18, 25, ...) in ml-1m; 0: not given
  gender: str  # '' where not given (the CSV family has no users file)
  occupation: str
  zip_code: str


class _UsersOfRatings(Mapping[str, User]):
  """The CSV family's users: any id a rating names, with no demographics (the GroupLens
  releases after ml-1m publish none); the examples keep the fields, empty, so every format
  gives the same tf.Examples."""

  def __getitem__(self, user_id: str) -> User:
    return User(user_id=user_id, age=0, gender='', occupation='', zip_code='')

  def __iter__(self):
    return iter(())

  def __len__(self) -> int:
    return 0


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


def open_binary(path: str):
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
  """The ratings file (u.data, ratings.dat or ratings.csv), e.g. for ExampleGen to fingerprint."""
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
# Decoding: the one place that turns bytes into text, for every file the readers read.

_UTF8_BOM = b'\xef\xbb\xbf'
_UTF16_BOMS = (b'\xff\xfe', b'\xfe\xff')


class _LineDecoder:
  """Decodes one file's lines as UTF-8 or latin-1, decided by its first non-ASCII line.

  Why not a fixed encoding: GroupLens ships latin-1, but a file re-saved by an editor or by
  pandas is usually UTF-8. Latin-1 decodes every byte sequence, so reading UTF-8 as latin-1
  never fails; it silently serves 'MisÃ©rables'. Strict UTF-8 is the test that can fail: a
  latin-1 accented letter is one byte that is not valid UTF-8 on its own, and for latin-1 text
  to pass as UTF-8 it would need pairs like 'Ã' followed by '©', i.e. text that is mojibake
  already. So a non-ASCII line that decodes as strict UTF-8 is UTF-8, and one that does not is
  latin-1. ASCII lines read the same either way; the first non-ASCII line (or a UTF-8
  byte-order mark) decides for the whole file, and a later line in the other encoding is an
  error: decoding it either way would garble one of the two.

  Decided per file, not per dataset: a user may have re-saved only movies.dat. Streaming: a
  line is decoded once, and nothing is read ahead.
  """

  def __init__(self, path: str, strict: bool = True):
    """strict: raise at the first line in the other encoding; else only note it
    (first_line_of), for a reader of one part of the file (byte_ranges.py)."""
    self.path = path
    self.strict = strict
    # encoding -> the first line in it (0: the UTF-8 byte-order mark)
    self.first_line_of: dict[str, int] = {}

  def decode(self, raw: bytes, line_no: int) -> str:
    if line_no == 1:
      raw = self._strip_byte_order_mark(raw)
    if raw.isascii():
      return raw.decode('ascii')
    try:
      text, encoding = raw.decode('utf-8'), 'utf-8'
    except UnicodeDecodeError:
      text, encoding = raw.decode('latin-1'), 'latin-1'
    if encoding not in self.first_line_of:
      self.first_line_of[encoding] = line_no
      error = mixed_encoding_error(self.path, self.first_line_of)
      if error and self.strict:
        raise error
    return text

  def _strip_byte_order_mark(self, raw: bytes) -> bytes:
    if raw.startswith(_UTF8_BOM):
      self.first_line_of['utf-8'] = 0
      return raw[len(_UTF8_BOM):]
    if raw.startswith(_UTF16_BOMS):
      raise MovieLensFormatError(
          f'{self.path}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); '
          're-save it as UTF-8 or latin-1', path=self.path, line_no=1)
    return raw


def mixed_encoding_error(path: str,
                         first_line_of: Mapping[str, int]) -> MovieLensFormatError | None:
  """The error for a file whose lines are in both encodings (encoding -> its first line, 0 for
  the byte-order mark): the first line decides, the other encoding's first line is wrong."""
  if len(first_line_of) < 2:
    return None
  decided, other = sorted(first_line_of, key=first_line_of.get)
  decided_by = ('the UTF-8 byte-order mark' if first_line_of[decided] == 0
                else f'line {first_line_of[decided]}')
  return MovieLensFormatError.at_line(
      path, first_line_of[other],
      f'this line is {_ENCODING_NAMES[other]}, but {decided_by} made the file '
      f'{_ENCODING_NAMES[decided]}: the file mixes encodings, and reading it either '
      'way would garble one of them; re-save it in one encoding (UTF-8, or latin-1 as '
      'GroupLens ships it)')


_ENCODING_NAMES = {'utf-8': 'UTF-8', 'latin-1': 'latin-1 (not valid UTF-8)'}


def line_decoder(path: str, strict: bool = True) -> _LineDecoder:
  """The decoder of one file's lines (_LineDecoder); strict=False only notes mixed encodings."""
  return _LineDecoder(path, strict)


def _decoded_lines(path: str) -> Iterator[tuple[int, str]]:
  """(1-based line number, text) of every line of a file, its line end included."""
  decoder = _LineDecoder(path)
  with open_binary(path) as lines:
    for line_no, raw in enumerate(lines, start=1):
      yield line_no, decoder.decode(raw, line_no)


# --------------------------------------------------------------------------------------------
# Splitting lines: the one place that turns text into fields and reports bad lines.


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


def _split_csv_line(line: str) -> list[str]:
  """The fields of one CSV line (RFC 4180 quoting: movies.csv quotes titles with commas)."""
  if '"' not in line:
    return line.split(',')
  try:
    return next(csv.reader([line], strict=True))
  except csv.Error as error:
    raise ValueError(f'bad CSV quoting ({error})') from None


def split_line(line: str, separator: str) -> list[str]:
  """A line's fields; ',' means CSV, where quotes may hold commas."""
  return _split_csv_line(line) if separator == ',' else line.split(separator)


def record_of_line(path: str, line_no: int, text: str, separator: str,
                   num_fields: int) -> _Record | None:
  """One decoded line as a record of exactly num_fields fields; None for an empty line.

  Lines end at '\\n' only (a stray '\\r' inside a title must not split it); a trailing '\\r'
  from CRLF files is dropped. Completely empty lines are skipped; anything else that does not
  split into num_fields fields is an error, because dropping it would lose data silently.
  """
  line = text.rstrip('\n')
  if line.endswith('\r'):
    line = line[:-1]
  if not line:
    return None
  try:
    fields = split_line(line, separator)
  except ValueError as error:
    raise MovieLensFormatError.at_line(path, line_no, str(error)) from None
  if len(fields) != num_fields:
    raise MovieLensFormatError.at_line(
        path, line_no,
        f'expected {num_fields} fields separated by {_separator_name(separator)}, '
        f'found {len(fields)}')
  return _Record(path, line_no, fields)


def check_header(record: _Record, header: str) -> None:
  """The CSV family's first line names its columns: anything else is not the file we read."""
  if ','.join(record.fields) != header:
    raise record.error(
        f"expected the header line {header!r}, found {','.join(record.fields)!r}: "
        'the CSV MovieLens files start with their column names')


def _split_records(path: str, separator: str, num_fields: int, kind: str,
                   header: str | None = None) -> Iterator[_Record]:
  """Streams the non-empty lines of a file as records of exactly num_fields fields
  (record_of_line), after the header line when the format has one (checked, not yielded).

  A file without a single record is an error: `kind` names what it should have held.
  """
  line_no = 0
  found = False
  header_due = header is not None
  for line_no, text in _decoded_lines(path):
    record = record_of_line(path, line_no, text, separator, num_fields)
    if record is None:
      continue
    if header_due:
      check_header(record, header)
      header_due = False
      continue
    found = True
    yield record
  if not found:
    contents = ('it is empty' if line_no == 0 else
                'it holds only its header line' if header is not None and not header_due
                else 'it holds only blank lines')
    raise empty_file_error(path, kind, contents)


def empty_file_error(path: str, kind: str, contents: str) -> MovieLensFormatError:
  """A file without a record of `kind`; contents says what it holds instead."""
  return MovieLensFormatError(
      f'{path}: no {kind} in the {kind} file ({contents}); a download or copy may have '
      f'been cut short: fetch it again, or {_OFFLINE_HINT}', path=path)


def _records(data_dir: PathLike, fmt: str, kind: str, num_fields: int) -> Iterator[_Record]:
  path = _data_file(data_dir, fmt, kind)
  _require_file(path, fmt, kind)  # checked eagerly by callers that are not generators
  return _split_records(path, SEPARATORS[fmt][kind], num_fields, kind, header_of(fmt, kind))


def header_of(fmt: str, kind: str) -> str | None:
  """The header line a format's file starts with (the CSV family's), else None."""
  return CSV_HEADERS[kind] if fmt == 'csv' else None


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
  else:  # ml-1m and the CSV family: id, title, genres separated by '|'
    num_fields, parse = 3, _parse_movie_with_genre_list
  records = _records(data_dir, fmt, 'movies', num_fields)
  return _index_by_id(records, parse, lambda movie: movie.movie_id, 'movie')


def _read_ml100k_genre_names(data_dir: PathLike) -> tuple[str, ...]:
  """Genre column names from u.genre (`name|index`), else the documented built-in list."""
  path = _data_file(data_dir, 'ml-100k', 'genres')
  if not is_file(path):
    return ML100K_GENRES
  names = []
  for record in _split_records(path, SEPARATORS['ml-100k']['genres'], 2, 'genres'):
    index = record.integer(1, 'genre index')
    if index != len(names):
      raise record.error(f'expected genre index {len(names)}, found {index}')
    names.append(record.fields[0])
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


def _parse_movie_with_genre_list(record: _Record) -> Movie:
  movie_id, title, genre_field = record.fields
  no_genres = not genre_field or genre_field == CSV_NO_GENRES
  genres = () if no_genres else tuple(genre_field.split('|'))
  return Movie(movie_id=movie_id, title=title, genres=genres)


# --------------------------------------------------------------------------------------------
# Users.


def read_users(data_dir: PathLike, fmt: str | None = None) -> Mapping[str, User]:
  """User id -> User; ml-1m occupation codes become the README's text. The CSV family has no
  users file: every id is a user with no demographics (_UsersOfRatings)."""
  fmt = _resolve_format(data_dir, fmt)
  if fmt == 'csv':
    return _UsersOfRatings()
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
  """Ratings in file order, only the latest of each (user, movie) pair (module docstring)."""
  return (rating for _, rating in iter_numbered_ratings(data_dir, fmt))


def iter_numbered_ratings(data_dir: PathLike,
                           fmt: str | None) -> Iterator[tuple[int, Rating]]:
  """(line number, rating) pairs, so a join failure can name the line a rating came from."""
  fmt = _resolve_format(data_dir, fmt)
  path = _data_file(data_dir, fmt, 'ratings')
  _require_file(path, fmt, 'ratings')  # eagerly: the file is read when a rating is asked for
  return _latest_ratings(path, SEPARATORS[fmt]['ratings'], header_of(fmt, 'ratings'))


def iter_every_rating(data_dir: PathLike,
                      fmt: str | None = None) -> Iterator[tuple[int, Rating]]:
  """(line number, rating) of every ratings line in file order, a pair rated twice included:
  for cutting a file into spans by time, where a re-rating belongs to the span it was made
  in (each span's reader then keeps the latest of a pair within it)."""
  fmt = _resolve_format(data_dir, fmt)
  path = _data_file(data_dir, fmt, 'ratings')
  _require_file(path, fmt, 'ratings')
  latest_allowed = int(time.time()) + FUTURE_SLACK_SECONDS
  return ((record.line_no, parse_rating(record, latest_allowed))
          for record in _split_records(path, SEPARATORS[fmt]['ratings'], 4, 'ratings',
                                       header_of(fmt, 'ratings')))


_LOW_32_BITS = (1 << 32) - 1


def _latest_ratings(path: str, separator: str,
                    header: str | None) -> Iterator[tuple[int, Rating]]:
  """Reads the file once into columns, then yields the kept ratings in file order.

  Whether a rating is kept is only known once the whole file is read, so the ratings wait as
  columns: 32 bytes a rating (about the size of its line; ml-1m's million ratings take 32 MB)
  plus the distinct user and movie ids, rather than hundreds of bytes as Python objects.
  """
  latest_allowed = int(time.time()) + FUTURE_SLACK_SECONDS  # one bound for the whole file
  user_index: dict[str, int] = {}
  movie_index: dict[str, int] = {}
  pairs, stars, timestamps, line_nos = (array.array(code) for code in 'qdqq')
  for record in _split_records(path, separator, 4, 'ratings', header):  # user, movie, rating, time
    rating = parse_rating(record, latest_allowed)
    user = user_index.setdefault(rating.user_id, len(user_index))
    pairs.append(user << 32 | movie_index.setdefault(rating.movie_id, len(movie_index)))
    stars.append(rating.rating)
    timestamps.append(rating.timestamp)
    line_nos.append(record.line_no)
  user_ids, movie_ids = list(user_index), list(movie_index)
  keep = latest_of_each_pair(np.frombuffer(pairs, dtype=np.int64),
                              np.frombuffer(timestamps, dtype=np.int64))
  dropped = np.flatnonzero(~keep)
  if len(dropped):
    _warn_about_duplicates(path, dropped, keep, pairs, line_nos, user_ids, movie_ids)
  for index, kept in enumerate(keep.tolist()):
    if kept:
      pair = pairs[index]
      yield line_nos[index], Rating(user_ids[pair >> 32], movie_ids[pair & _LOW_32_BITS],
                                    stars[index], timestamps[index])


def latest_of_each_pair(pairs: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
  """keep[i]: whether rating i is the latest of its pair (greatest timestamp, then line).

  pairs, timestamps: [num_ratings], in file order.
  """
  order = np.lexsort((np.arange(len(pairs)), timestamps, pairs))  # by pair, time, then line
  superseded = order[:-1][pairs[order[:-1]] == pairs[order[1:]]]
  keep = np.ones(len(pairs), dtype=bool)
  keep[superseded] = False
  return keep


def _warn_about_duplicates(path: str, dropped: np.ndarray, keep: np.ndarray,
                           pairs: array.array, line_nos: array.array, user_ids: list[str],
                           movie_ids: list[str]) -> None:
  """One warning per file: the counts, and the first dropped line with the line it gave way to."""
  pair_column = np.frombuffer(pairs, dtype=np.int64)
  first = int(dropped[0])
  winner = int(np.flatnonzero(keep & (pair_column == pairs[first]))[0])
  absl.logging.warning(
      '%s: dropped %d duplicate ratings of %d (user, movie) pairs rated more than once, '
      "keeping each pair's latest rating (greatest timestamp; on a tie, the later line); "
      'e.g. line %d (user %r, movie %r) gave way to line %d',
      path, len(dropped), len(np.unique(pair_column[dropped])), line_nos[first],
      user_ids[pairs[first] >> 32], movie_ids[pairs[first] & _LOW_32_BITS], line_nos[winner])


def parse_rating(record: _Record, latest_allowed: int) -> Rating:
  timestamp = record.integer(3, 'timestamp')
  if not EARLIEST_TIMESTAMP <= timestamp <= latest_allowed:
    raise record.error(_timestamp_out_of_range(timestamp, latest_allowed))
  return Rating(user_id=record.fields[0], movie_id=record.fields[1],
                rating=record.number(2, 'rating'), timestamp=timestamp)


def _timestamp_out_of_range(timestamp: int, latest_allowed: int) -> str:
  if timestamp < EARLIEST_TIMESTAMP:
    where = f'before {_utc(EARLIEST_TIMESTAMP)}, when MovieLens ratings begin'
  else:
    where = f'after {_utc(latest_allowed)}, the time of reading plus a day'
  message = (f'timestamp {timestamp} ({_utc(timestamp)}) is {where}; ratings files hold '
             'seconds since 1970-01-01 UTC')
  if EARLIEST_TIMESTAMP <= timestamp // 1000 <= latest_allowed:
    message += f'; this looks like milliseconds ({_utc(timestamp // 1000)} in seconds)'
  return message


def _utc(timestamp: int) -> str:
  try:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
  except (OverflowError, OSError, ValueError):
    return 'beyond any calendar date'
  return moment.strftime('%Y-%m-%d %H:%M:%S UTC')


def iter_examples(data_dir: PathLike, fmt: str | None = None) -> Iterator[dict]:
  """Ratings joined with their movie and user, keyed by the raw feature names of features.py.

  Movies and users are read up front (they are small); ratings stream.
  """
  fmt = _resolve_format(data_dir, fmt)
  movies = read_movies(data_dir, fmt)
  users = read_users(data_dir, fmt)
  path = _data_file(data_dir, fmt, 'ratings')
  numbered_ratings = iter_numbered_ratings(data_dir, fmt)
  return (_join(path, line_no, rating, movies, users) for line_no, rating in numbered_ratings)


def join_tables(path: str, line_no: int, user_id: str, movie_id: str,
                movies: Mapping[str, Movie], users: Mapping[str, User]) -> tuple[Movie, User]:
  """A rating's movie and user; an id not in its table is an error naming the rating's line."""
  movie = movies.get(movie_id)
  if movie is None:
    raise MovieLensFormatError.at_line(
        path, line_no, f'movie id {movie_id!r} is not in the movies file')
  user = users.get(user_id)
  if user is None:
    raise MovieLensFormatError.at_line(
        path, line_no, f'user id {user_id!r} is not in the users file')
  return movie, user


def _join(path: str, line_no: int, rating: Rating, movies: Mapping[str, Movie],
          users: Mapping[str, User]) -> dict:
  movie, user = join_tables(path, line_no, rating.user_id, rating.movie_id, movies, users)
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
