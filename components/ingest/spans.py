"""Ratings that arrive in numbered spans: `<data dir>/span-<N>/`, each a MovieLens folder.

A deployed recommender's data grows: each day or week brings a new span of ratings. Each span
folder is a complete raw folder in one of the formats components/ingest/movielens.py reads:
its ratings file holds that span's ratings; its movies and users files hold every movie and
user known by then (they may grow from span to span, never shrink below what its ratings name).

How the pipeline reads them (pipeline/pipeline.py):
- ExampleGen's input pattern is `SPAN_PATTERN` (TFX's {SPAN} spec): each run ingests the
  newest span folder, splits it (by time: its last days are its eval split) and records the
  span number on its Examples artifact. Earlier spans are not read again: their Examples from
  earlier runs are in MLMD.
- TFX's SpanRangeStrategy resolver picks the newest `--train-spans` of those artifacts (all by
  default), and SpanWindow (components/ingest/span_window.py) joins them into the one Examples
  artifact the model's examples are built from: eval is the newest span's eval split, data
  that no model has trained on yet; train is all the rest.

`write_spans` cuts one MovieLens folder into span folders by time, as data would have arrived
(the `pipeline replay` command).
"""
import dataclasses
import os
import pathlib
import re
import shutil
from typing import Dict, List, Optional, Sequence

import numpy as np

from components.ingest import movielens

SPAN_FOLDER_PREFIX = 'span-'
# ExampleGen's input pattern, relative to the data dir: every file of the newest span folder.
SPAN_PATTERN = SPAN_FOLDER_PREFIX + '{SPAN}/*'
# The Examples artifact property ExampleGen writes the span number to (TFX's name).
SPAN_PROPERTY = 'span'
_SPAN_FOLDER = re.compile(re.escape(SPAN_FOLDER_PREFIX) + r'(\d+)$')


def span_folder(data_dir: os.PathLike, span: int) -> pathlib.Path:
  return pathlib.Path(data_dir, f'{SPAN_FOLDER_PREFIX}{span}')


def span_numbers(data_dir: os.PathLike) -> List[int]:
  """The span numbers of `<data_dir>/span-<N>/` folders, ascending; [] for a plain folder."""
  folder = pathlib.Path(data_dir)
  if not folder.is_dir():
    return []
  return sorted(int(match.group(1)) for match in map(_SPAN_FOLDER.match, os.listdir(folder))
                if match and (folder / match.group(0)).is_dir())


def describe(numbers: Sequence[int]) -> str:
  """'3' or '1-4' (consecutive) or '1, 3, 4'."""
  if not numbers:
    return 'none'
  if list(numbers) == list(range(numbers[0], numbers[-1] + 1)):
    return str(numbers[0]) if len(numbers) == 1 else f'{numbers[0]}-{numbers[-1]}'
  return ', '.join(map(str, numbers))


# --------------------------------------------------------------------------------------------
# Cutting a dataset into spans by time.

@dataclasses.dataclass(frozen=True)
class WrittenSpan:
  """One span folder write_spans wrote: its number, folder, time range and ratings count."""
  span: int
  folder: pathlib.Path
  start: Optional[int]  # its first timestamp's lower bound (None for the first: all before)
  end: int  # timestamps strictly before this
  num_ratings: int


def write_spans(source_dir: os.PathLike, out_dir: os.PathLike, boundaries: Sequence[int]
                ) -> List[WrittenSpan]:
  """Cuts a MovieLens folder into span folders by rating time.

  boundaries: ascending timestamps b1 < b2 < ...: span 1 holds the ratings before b1, span
    k the ratings in [b(k-1), b(k)); ratings at or after the last boundary are left out.
  Each span's ratings lines are copied as they are (same format and encoding; a pair rated
  again later is in both spans); its movies and users files hold the lines of every movie
  and user rated in it or an earlier span; other files (ml-100k's u.genre) are copied whole.
  A span with no ratings is skipped, so span numbers are consecutive. Each span folder appears
  whole (written beside it, then renamed). Returns the spans written, oldest first.
  """
  source = pathlib.Path(source_dir)
  fmt = movielens.detect_format(source)
  names = movielens.FILE_NAMES[fmt]
  bounds = list(boundaries)
  if not bounds or bounds != sorted(set(bounds)):
    raise ValueError(f'span boundaries must be ascending and distinct, got {bounds}')
  # Each line's span, from the validated reader (a bad line fails here, named).
  ratings_lines = _lines(source / names['ratings'])
  by_span: Dict[int, List[bytes]] = {}  # span index -> its ratings lines
  rated: Dict[int, Dict[str, set]] = {}  # span index -> {'movies': ids, 'users': ids}
  for line_no, rating in movielens.iter_every_rating(source, fmt):
    index = int(np.searchsorted(bounds, rating.timestamp, side='right'))
    if index < len(bounds):
      by_span.setdefault(index, []).append(ratings_lines[line_no - 1])
      ids = rated.setdefault(index, {'movies': set(), 'users': set()})
      ids['movies'].add(rating.movie_id)
      ids['users'].add(rating.user_id)

  # The CSV family's files start with a header line, which every span's file repeats.
  headers = {kind: (movielens.header_of(fmt, kind) + '\n').encode() if movielens.header_of(
      fmt, kind) else b'' for kind in ('ratings', 'movies', 'users') if kind in names}
  catalogues = {kind: [(_first_field(line, movielens.SEPARATORS[fmt][kind]), line)
                       for line in _lines(source / names[kind])[1 if headers[kind] else 0:]
                       if line.strip()]
                for kind in ('movies', 'users') if kind in names}
  out = pathlib.Path(out_dir)
  written, known = [], {'movies': set(), 'users': set()}
  for index in sorted(by_span):
    for kind, ids in rated[index].items():
      known[kind] |= ids
    folder = span_folder(out, len(written) + 1)
    staging = folder.with_name(f'.{folder.name}.tmp')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / names['ratings']).write_bytes(headers['ratings'] + b''.join(by_span[index]))
    for kind, lines in catalogues.items():
      (staging / names[kind]).write_bytes(
          headers[kind] + b''.join(line for key, line in lines if key in known[kind]))
    for kind, name in names.items():
      if kind not in ('ratings', 'movies', 'users') and (source / name).is_file():
        shutil.copyfile(source / name, staging / name)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    written.append(WrittenSpan(len(written) + 1, folder, bounds[index - 1] if index else None,
                               bounds[index], len(by_span[index])))
  return written


_UTF8_BOM = b'\xef\xbb\xbf'


def _lines(path: pathlib.Path) -> List[bytes]:
  """A file's lines as bytes, each with its '\\n' (the readers end lines at '\\n' only), a
  leading UTF-8 byte-order mark dropped (the line it starts may land anywhere in a span)."""
  data = path.read_bytes().removeprefix(_UTF8_BOM)
  lines = [line + b'\n' for line in data.split(b'\n')]
  if data.endswith(b'\n') or not data:
    lines.pop()  # the empty piece after the last newline
  return lines


def _first_field(line: bytes, separator: str) -> str:
  """The id a movies or users line starts with (ids are ASCII digits in MovieLens)."""
  return line.split(separator.encode(), 1)[0].strip().decode('latin-1')
