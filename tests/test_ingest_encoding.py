"""Every raw file is read as UTF-8 or latin-1, whichever it is, and never garbled silently."""

import re

import pytest

from components.ingest import movielens
from components.ingest.movielens import MovieLensFormatError
from tests.test_movielens_readers import ML100K_FILES, ML1M_FILES, at, write_dataset

TITLE = 'Misérables, Les (1995)'
FILES = {'ml-100k': ML100K_FILES, 'ml-1m': ML1M_FILES}


@pytest.fixture
def ml1m(tmp_path):
  return write_dataset(tmp_path / 'ml-1m', ML1M_FILES)


def write_movies(folder, encoding):
  (folder / 'movies.dat').write_bytes(
      f'10::{TITLE}::Drama\n20::Toy Story (1995)::Animation\n'.encode(encoding))


@pytest.mark.parametrize('encoding', ['utf-8', 'latin-1'])
def test_a_title_reads_the_same_from_a_utf8_or_a_latin1_movies_file(ml1m, encoding):
  write_movies(ml1m, encoding)
  assert movielens.read_movies(ml1m)['10'].title == TITLE


@pytest.mark.parametrize('fmt, name', [
    (fmt, name) for fmt, files in FILES.items() for name in files])
def test_a_utf8_byte_order_mark_is_dropped_from_every_file(tmp_path, fmt, name):
  """Left in, it would become part of the first id ('\\ufeff1' is not in the users file)."""
  expected = list(movielens.iter_examples(write_dataset(tmp_path / 'plain', FILES[fmt])))
  folder = write_dataset(tmp_path / 'bom', FILES[fmt])
  (folder / name).write_bytes(FILES[fmt][name].encode('utf-8-sig'))
  assert list(movielens.iter_examples(folder)) == expected


@pytest.mark.parametrize('first, second, message', [
    ('utf-8', 'latin-1', 'this line is latin-1 (not valid UTF-8), but line 1 made the file UTF-8'),
    ('latin-1', 'utf-8', 'this line is UTF-8, but line 1 made the file latin-1 (not valid UTF-8)'),
])
def test_a_file_mixing_utf8_and_latin1_lines_is_an_error_naming_both(ml1m, first, second,
                                                                     message):
  (ml1m / 'movies.dat').write_bytes(f'10::{TITLE}::Drama\n'.encode(first)
                                    + '20::Café (1995)::Drama\n'.encode(second))
  with pytest.raises(MovieLensFormatError, match=at('movies.dat', 2, message)):
    movielens.read_movies(ml1m)


def test_latin1_after_a_utf8_byte_order_mark_is_an_error(ml1m):
  (ml1m / 'movies.dat').write_bytes(b'\xef\xbb\xbf10::Caf\xe9 (1995)::Drama\n')
  with pytest.raises(MovieLensFormatError,
                     match=at('movies.dat', 1, 'this line is latin-1 (not valid UTF-8), but '
                              'the UTF-8 byte-order mark made the file UTF-8')):
    movielens.read_movies(ml1m)


def test_a_utf16_file_is_refused_naming_it(ml1m):
  (ml1m / 'users.dat').write_bytes(ML1M_FILES['users.dat'].encode('utf-16'))
  with pytest.raises(MovieLensFormatError,
                     match=re.escape(f"{ml1m / 'users.dat'}: the file is UTF-16")):
    movielens.read_users(ml1m)
