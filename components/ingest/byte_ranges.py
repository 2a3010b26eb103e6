"""Reads a raw MovieLens folder in parallel: the ratings file cut into byte ranges.

Why: one worker parsing the whole ratings file read about 4,500 ratings a second and held the
file in its memory; ml-25m has 25 million ratings. Here each range is parsed by whichever Beam
worker gets it, and no worker holds more than one range's batch of examples plus, for the
duplicate rule and the time split, a few bytes per rating of its shard of (user, movie) keys.

The contract, tested against the one-worker reader (movielens.iter_examples): the same
examples (in another order), and for a bad file the same error: the first bad line by its
exact file and line number, the encoding, header and empty-file rules, and the latest rating
of each (user, movie) pair kept, with the same warning.

How (ReadRatingBatches):
1. The file is cut into ranges of about range_bytes; a range owns the lines that *start* in
   it. Each range counts its newlines, so each knows its first line number (prefix sums).
2. Scan: each range parses its lines and reports what the one-worker reader would need to
   know first (RangeReport: its first bad line, the first line of each encoding, its first
   record), and sends each rating's (user, movie) key, timestamp and line number to a shard
   of keys by a stable hash of the key.
3. The verdict: the earliest problem in the whole file, or none. Each shard finds the ratings
   superseded by a later rating of the same pair, and the kept ratings' timestamps (for the
   time split's cutoff).
4. Parse: each range parses again (cheaper than shipping parsed ratings between workers),
   raises the verdict's error if there is one, drops the superseded lines, joins the movies
   and users (side inputs: small tables) and yields Arrow record batches of raw features. A
   rating naming an unknown movie or user is reported by the earliest such line.
5. components/example_batches.py turns a batch into serialized tf.Examples with tfx_bsl's C++
   encoder (about 3 us a rating, against about 45 us for building tf.train.Example in Python).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import absl.logging
import apache_beam as beam
import numpy as np
import pyarrow as pa

from components import features as f
from components.ingest import movielens

RANGE_BYTES = 16 << 20  # about 650,000 ratings of ml-25m's ratings.csv
BATCH_ROWS = 8192  # ratings per Arrow record batch
NUM_KEY_SHARDS = 16  # groups of (user, movie) keys for the duplicate rule


@dataclasses.dataclass(frozen=True)
class ByteRange:
  """Bytes [start, end) of path; it owns the lines that start in it."""
  path: str
  index: int
  start: int
  end: int


def byte_ranges(path: str, range_bytes: int = RANGE_BYTES) -> List[ByteRange]:
  """The file cut into ranges of range_bytes (the last shorter); one range for an empty file."""
  size = _file_size(path)
  starts = list(range(0, max(size, 1), range_bytes))
  return [ByteRange(path, index, start, min(start + range_bytes, size))
          for index, start in enumerate(starts)]


def _file_size(path: str) -> int:
  if '://' in path:
    import tensorflow as tf
    return tf.io.gfile.stat(path).length
  return os.path.getsize(path)


def count_newlines(byte_range: ByteRange) -> Tuple[int, int]:
  """(range index, newlines in its bytes)."""
  count = 0
  with movielens.open_binary(byte_range.path) as file:
    file.seek(byte_range.start)
    remaining = byte_range.end - byte_range.start
    while remaining > 0:
      chunk = file.read(min(remaining, 1 << 22))
      if not chunk:
        break
      count += chunk.count(b'\n')
      remaining -= len(chunk)
  return byte_range.index, count


def _raw_lines(byte_range: ByteRange, newlines_before: int) -> Iterator[Tuple[int, bytes]]:
  """(line number, raw bytes) of the lines that start in the range."""
  with movielens.open_binary(byte_range.path) as file:
    line_no = newlines_before + 1
    position = byte_range.start
    if byte_range.start > 0:  # skip the end of a line that started before the range
      file.seek(byte_range.start - 1)
      skipped = file.readline()[1:]  # from the range's start through the first newline
      position += len(skipped)
      line_no += skipped.count(b'\n')
    while position < byte_range.end:
      raw = file.readline()
      if not raw:
        return
      yield line_no, raw
      position += len(raw)
      line_no += 1


# --------------------------------------------------------------------------------------------
# Scan: what each range knows of the file's problems, and its ratings' keys.


@dataclasses.dataclass
class RangeReport:
  """What the one-worker reader would have met in one range, in line order."""
  index: int
  first_line_of: Dict[str, int]  # encoding -> its first line in the range (0: the BOM)
  error: Optional[movielens.MovieLensFormatError] = None  # its first bad line
  # Its first non-empty line: (line number, whether it is the CSV header, the error that line
  # gives if it is not the file's first record, or the header error if it is and is no header)
  first_record: Optional[Tuple[int, bool, Optional[movielens.MovieLensFormatError]]] = None
  records: int = 0  # ratings parsed (before the first bad line)


class KeyBatch(NamedTuple):
  """One range's ratings of one shard: keys b'user\\tmovie', timestamps, line numbers."""
  keys: np.ndarray  # [n] bytes
  timestamps: np.ndarray  # [n] int64
  line_nos: np.ndarray  # [n] int64


class _RangeParser:
  """Parses one range's lines as ratings, by the one-worker reader's rules."""

  def __init__(self, byte_range: ByteRange, fmt: str, newlines_before: int):
    self.range = byte_range
    self.separator = movielens.SEPARATORS[fmt]['ratings']
    self.header = movielens.header_of(fmt, 'ratings')
    self.decoder = movielens.line_decoder(byte_range.path, strict=False)
    self.newlines_before = newlines_before
    self.latest_allowed = int(time.time()) + movielens.FUTURE_SLACK_SECONDS
    self.report = RangeReport(byte_range.index, self.decoder.first_line_of)

  def ratings(self) -> Iterator[Tuple[int, str, str, float, int]]:
    """(line number, user id, movie id, rating, timestamp) of the range's ratings, until its
    first bad line (reported).

    A line that splits cleanly into good values takes a fast path (a quarter of the time of
    the reader's records); anything else, and the range's first record, goes the reader's way
    (movielens.record_of_line, parse_rating), which raises its exact error.
    """
    separator, quoted = self.separator, self.separator == ','
    earliest, latest = movielens.EARLIEST_TIMESTAMP, self.latest_allowed
    try:
      for line_no, raw in _raw_lines(self.range, self.newlines_before):
        text = self.decoder.decode(raw, line_no)
        if self.report.first_record is not None and not (quoted and '"' in text):
          fields = text.rstrip('\n').split(separator)
          if len(fields) == 4:
            try:
              timestamp, stars = int(fields[3]), float(fields[2])
            except ValueError:
              timestamp, stars = 0, math.nan
            if earliest <= timestamp <= latest and math.isfinite(stars):
              self.report.records += 1
              yield line_no, fields[0], fields[1], stars, timestamp
              continue
        record = movielens.record_of_line(self.range.path, line_no, text, separator, 4)
        if record is None:
          continue
        if self.report.first_record is None and self._is_header(record):
          continue
        rating = movielens.parse_rating(record, self.latest_allowed)
        self.report.records += 1
        yield line_no, rating.user_id, rating.movie_id, rating.rating, rating.timestamp
    except movielens.MovieLensFormatError as error:
      self.report.error = error

  def _is_header(self, record) -> bool:
    """Notes the range's first record; True if it is the header (skipped, for now)."""
    if self.header is None:
      self.report.first_record = (record.line_no, False, None)
      return False
    try:
      movielens.check_header(record, self.header)
    except movielens.MovieLensFormatError as not_header:
      self.report.first_record = (record.line_no, False, not_header)
      return False
    try:  # what this line gives if it is not the file's first record
      movielens.parse_rating(record, self.latest_allowed)
      as_rating = None
    except movielens.MovieLensFormatError as error:
      as_rating = error
    self.report.first_record = (record.line_no, True, as_rating)
    return True


def _shard_of(key: bytes) -> int:
  return zlib.crc32(key) % NUM_KEY_SHARDS


class _Scan(beam.DoFn):
  """Range -> its RangeReport (main output) and (shard, KeyBatch) pairs ('keys')."""

  def __init__(self, fmt: str):
    self.fmt = fmt

  def process(self, byte_range: ByteRange, newlines: Mapping[int, int]):
    parser = _RangeParser(byte_range, self.fmt, _newlines_before(byte_range, newlines))
    shards: Dict[int, Tuple[list, list, list]] = {}
    for line_no, user_id, movie_id, _, timestamp in parser.ratings():
      key = f'{user_id}\t{movie_id}'.encode()
      keys, timestamps, line_nos = shards.setdefault(_shard_of(key), ([], [], []))
      keys.append(key)
      timestamps.append(timestamp)
      line_nos.append(line_no)
    yield parser.report
    for shard, (keys, timestamps, line_nos) in shards.items():
      yield beam.pvalue.TaggedOutput('keys', (shard, KeyBatch(
          np.array(keys, dtype=bytes), np.array(timestamps, np.int64),
          np.array(line_nos, np.int64))))


def _newlines_before(byte_range: ByteRange, newlines: Mapping[int, int]) -> int:
  return sum(newlines[index] for index in range(byte_range.index))


def verdict(reports: List[RangeReport], path: str, file_size: int,
            fmt: str) -> Optional[movielens.MovieLensFormatError]:
  """The error the one-worker reader raises for the file (its earliest), or None."""
  reports = sorted(reports, key=lambda report: report.index)
  candidates: List[movielens.MovieLensFormatError] = []
  first_line_of: Dict[str, int] = {}
  for report in reports:
    for encoding, line_no in report.first_line_of.items():
      first_line_of[encoding] = min(line_no, first_line_of.get(encoding, line_no))
  mixed = movielens.mixed_encoding_error(path, first_line_of)
  if mixed:
    candidates.append(mixed)
  firsts = [report.first_record for report in reports if report.first_record]
  header = movielens.header_of(fmt, 'ratings')
  if firsts:
    (_, is_header, error), later = firsts[0], firsts[1:]
    if header is not None and not is_header:
      candidates.append(error)  # the file's first record is no header
    candidates.extend(error for _, later_is_header, error in later  # a header line later on
                      if later_is_header and error is not None)
  candidates.extend(report.error for report in reports if report.error)
  if candidates:
    # On one line, the decoder speaks first (it runs before the line is split).
    return min(candidates, key=lambda error: (error.line_no or 0, error is not mixed))
  if not sum(report.records for report in reports):
    header_only = bool(firsts) and firsts[0][1] and header is not None
    contents = ('it is empty' if file_size == 0 else 'it holds only its header line'
                if header_only else 'it holds only blank lines')
    return movielens.empty_file_error(path, 'ratings', contents)
  return None


# --------------------------------------------------------------------------------------------
# The duplicate rule, per shard of keys.


class ShardResult(NamedTuple):
  superseded: np.ndarray  # [n] int64: line numbers of ratings a later one of their pair replaces
  kept_timestamps: np.ndarray  # [m] int64: the timestamps of the kept ratings
  # For the warning: (first superseded line, its key, the line that replaced it); or None
  example: Optional[Tuple[int, bytes, int]]
  pairs: int  # pairs rated more than once


def resolve_shard(batches: List[KeyBatch]) -> ShardResult:
  """Keeps each pair's latest rating: greatest timestamp, then the later line."""
  keys = np.concatenate([batch.keys for batch in batches])
  timestamps = np.concatenate([batch.timestamps for batch in batches])
  line_nos = np.concatenate([batch.line_nos for batch in batches])
  order = np.argsort(line_nos, kind='stable')  # file order: latest_of_each_pair's tie rule
  keys, timestamps, line_nos = keys[order], timestamps[order], line_nos[order]
  _, pair_ids = np.unique(keys, return_inverse=True)
  keep = movielens.latest_of_each_pair(pair_ids.astype(np.int64), timestamps)
  dropped = np.flatnonzero(~keep)
  example = None
  if len(dropped):
    first = dropped[0]
    winner = np.flatnonzero(keep & (pair_ids == pair_ids[first]))[0]
    example = (int(line_nos[first]), bytes(keys[first]), int(line_nos[winner]))
  return ShardResult(line_nos[dropped], timestamps[keep], example,
                     len(np.unique(pair_ids[dropped])))


class DuplicateCounts(NamedTuple):
  """A shard's part of the duplicate warning (a few numbers, not its arrays)."""
  example: Optional[Tuple[int, bytes, int]]
  dropped: int
  pairs: int


def duplicate_counts(result: ShardResult) -> DuplicateCounts:
  return DuplicateCounts(result.example, len(result.superseded), result.pairs)


def warn_about_duplicates(counts: List[DuplicateCounts], path: str) -> None:
  """The one-worker reader's warning, from every shard's counts (movielens.py)."""
  examples = [shard.example for shard in counts if shard.example]
  if not examples:
    return
  first_line, key, winner = min(examples)
  user, movie = key.decode().split('\t')
  absl.logging.warning(
      '%s: dropped %d duplicate ratings of %d (user, movie) pairs rated more than once, '
      "keeping each pair's latest rating (greatest timestamp; on a tie, the later line); "
      'e.g. line %d (user %r, movie %r) gave way to line %d',
      path, sum(shard.dropped for shard in counts), sum(shard.pairs for shard in counts),
      first_line, user, movie, winner)


# --------------------------------------------------------------------------------------------
# Parse: kept ratings, joined, as Arrow record batches.


def record_batch(rows: List[Tuple[str, str, float, int, movielens.Movie, movielens.User]]
                 ) -> pa.RecordBatch:
  """Raw feature columns of joined ratings (user id, movie id, rating, timestamp, movie,
  user): one row each, every feature a list of one value (genres: zero or more)."""
  count = len(rows)
  one_each = pa.array(np.arange(count + 1, dtype=np.int32))

  def strings(values):
    return pa.ListArray.from_arrays(one_each, pa.array(
        [value.encode() for value in values], pa.binary()))

  def numbers(values, dtype):
    return pa.ListArray.from_arrays(one_each, pa.array(np.fromiter(values, dtype, count)))

  users = [row[5] for row in rows]
  movies = [row[4] for row in rows]
  columns = {
      f.USER_ID: strings(row[0] for row in rows),
      f.MOVIE_ID: strings(row[1] for row in rows),
      f.MOVIE_TITLE: strings(movie.title for movie in movies),
      f.USER_GENDER: strings(user.gender for user in users),
      f.USER_OCCUPATION: strings(user.occupation for user in users),
      f.USER_ZIP_CODE: strings(user.zip_code for user in users),
      f.TIMESTAMP: numbers((row[3] for row in rows), np.int64),
      f.USER_AGE: numbers((user.age for user in users), np.int64),
      f.USER_RATING: numbers((row[2] for row in rows), np.float32),
  }
  offsets = np.zeros(count + 1, np.int32)
  np.cumsum([len(movie.genres) for movie in movies], out=offsets[1:])
  columns[f.MOVIE_GENRES] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(
      [genre.encode() for movie in movies for genre in movie.genres], pa.binary()))
  assert set(columns) == set(f.RAW_STRING_FEATURES + f.RAW_INT_FEATURES + f.RAW_FLOAT_FEATURES
                             + f.RAW_STRING_LIST_FEATURES)
  return pa.RecordBatch.from_arrays(list(columns.values()), list(columns))


class _Parse(beam.DoFn):
  """Range -> Arrow record batches of its kept, joined ratings; ('unjoined', error) for its
  first kept rating naming an unknown movie or user."""

  def __init__(self, fmt: str):
    self.fmt = fmt

  def process(self, byte_range: ByteRange, newlines: Mapping[int, int],
              error: Optional[movielens.MovieLensFormatError], superseded: np.ndarray,
              tables: Tuple[Mapping[str, movielens.Movie], Mapping[str, movielens.User]]):
    if error is not None:
      raise error
    movies, users = tables
    before = _newlines_before(byte_range, newlines)
    parser = _RangeParser(byte_range, self.fmt, before)
    # The range's lines are numbered before + 1 .. before + its newlines + 1.
    low, high = np.searchsorted(superseded, [before + 1, before + newlines[byte_range.index] + 2])
    dropped = set(superseded[low:high].tolist())
    rows = []
    for line_no, user_id, movie_id, stars, timestamp in parser.ratings():
      if line_no in dropped:
        continue
      try:
        movie, user = movielens.join_tables(byte_range.path, line_no, user_id, movie_id,
                                            movies, users)
      except movielens.MovieLensFormatError as unjoined:  # reported by its line (_raise_first)
        yield beam.pvalue.TaggedOutput('unjoined', unjoined)
        break
      rows.append((user_id, movie_id, stars, timestamp, movie, user))
      if len(rows) == BATCH_ROWS:
        yield record_batch(rows)
        rows = []
    if rows:
      yield record_batch(rows)


def _raise_first(errors: List[movielens.MovieLensFormatError]) -> None:
  if errors:
    raise min(errors, key=lambda error: error.line_no)


class RatingBatches(NamedTuple):
  """ReadRatingBatches' outputs."""
  batches: beam.PCollection  # pa.RecordBatch of raw features, kept ratings joined
  kept_timestamps: beam.PCollection  # np.ndarray [n] int64 per shard: the kept ratings'


@beam.ptransform_fn
def ReadRatingBatches(pipeline: beam.Pipeline, data_dir: str,
                      range_bytes: int = RANGE_BYTES) -> RatingBatches:
  """A raw MovieLens folder -> RatingBatches, parsed in byte ranges (module docstring)."""
  fmt = movielens.detect_format(data_dir)
  path = movielens.ratings_path(data_dir, fmt)
  ranges = byte_ranges(path, range_bytes)
  spread = (pipeline
            | 'Ranges' >> beam.Create(ranges)
            | 'SpreadRanges' >> beam.Reshuffle())
  newlines = beam.pvalue.AsDict(spread | 'CountNewlines' >> beam.Map(count_newlines))
  scanned = spread | 'Scan' >> beam.ParDo(_Scan(fmt), newlines).with_outputs(
      'keys', main='reports')
  error = (scanned.reports
           | 'AllReports' >> beam.combiners.ToList()
           | 'Verdict' >> beam.Map(verdict, path, _file_size(path), fmt))
  shards = (scanned['keys']
            | 'ByShard' >> beam.GroupByKey()
            | 'KeepLatest' >> beam.MapTuple(lambda _, batches: resolve_shard(list(batches))))
  _ = (shards
       | 'DuplicateCounts' >> beam.Map(duplicate_counts)
       | 'AllShards' >> beam.combiners.ToList()
       | 'WarnAboutDuplicates' >> beam.Map(warn_about_duplicates, path))
  superseded = (shards
                | 'Superseded' >> beam.Map(lambda result: result.superseded)
                | 'AllSuperseded' >> beam.combiners.ToList()
                | 'Sorted' >> beam.Map(
                    lambda arrays: np.sort(np.concatenate(arrays)) if arrays
                    else np.zeros(0, np.int64)))
  tables = (pipeline
            | 'Folder' >> beam.Create([data_dir])
            | 'MoviesAndUsers' >> beam.Map(
                lambda folder: (movielens.read_movies(folder, fmt),
                                movielens.read_users(folder, fmt))))
  parsed = spread | 'Parse' >> beam.ParDo(
      _Parse(fmt), newlines, beam.pvalue.AsSingleton(error),
      beam.pvalue.AsSingleton(superseded), beam.pvalue.AsSingleton(tables)).with_outputs(
          'unjoined', main='batches')
  _ = (parsed.unjoined
       | 'AllUnjoined' >> beam.combiners.ToList()
       | 'RaiseFirstUnjoined' >> beam.Map(_raise_first))
  kept_timestamps = shards | 'KeptTimestamps' >> beam.Map(lambda result: result.kept_timestamps)
  return RatingBatches(parsed.batches, kept_timestamps)
