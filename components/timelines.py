"""TimelineGen: rating examples -> one example per (user, next movie) for the sequential model.

Each user's ratings (every split of ExampleGen's output) are grouped, those below min_rating
dropped, and the rest sorted into a timeline. Ties in time are common in MovieLens (a user
rates many movies in the same second), so the order is by timestamp, then movie id (numerically
when the id is a number, as MovieLens' are; byte order otherwise): the same data always gives
the same timelines. Users with fewer than min_timeline_length movies are left out. Every movie
after the first becomes a label, with up to max_context_length movies before it as its
context, oldest first (the TFRS sequential tutorial's protocol). Which examples are evaluated
is the `eval_examples` rule (EVAL_RULES); when the ratings have a validation split (valid, which
early stopping reads), the same rule picks the validation examples:
- 'future': those whose next movie is a rating of ExampleGen's eval split (valid: of its valid
  split). With the time split that is the future: every rating at or after the cut, asked
  with the history so far (the past's and the future's own earlier ratings), as a deployed
  model is asked. No training example's next movie or context holds a rating of the future.
- 'last': each user's last movie (leave-last-out, the SASRec/BERT4Rec protocol; valid: the one
  before it, SASRec's validation); the rest train.
- 'hash': a stable hash of (user, position), eval_percent of them (the tutorial's split; valid:
  the next valid_percent).

Every example also says whether it ends one of its user's training windows (window_end):
the user's last training example does, and every max_context_length-th one before it. Each
such example's context and next movie cover max_context_length + 1 movies of the timeline,
and together the windows cover it with each movie a next movie once, so a model that learns
from every position of a window (SASRec's objective: every movie of the context predicts the
one after it) reads the window ends alone, each rating once an epoch instead of once per
example whose context holds it. window_end_all marks the same over the user's whole timeline
(examples of every split): the windows of the refit, which trains on all of them.
"""
import collections
import hashlib
import itertools
import os
from typing import Dict, Iterable, Iterator, List, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import BeamComponentParameter
from tfx.types import artifact_utils

from components import example_batches
from components.settings_gen import read_values as read_settings
from components import features as f

SPLITS = ('train', 'eval')
# With a validation split: the splits in time order for the 'future' rule.
SPLITS_WITH_VALID = ('train', f.VALID_SPLIT, 'eval')
EVAL_RULES = ('future', 'last', 'hash')
# Not a tf.Example feature: the ExampleGen split a rating was read from, for the 'future' rule.
_SOURCE_SPLIT = 'source_split'
# A timeline example's features and their Arrow types (list columns: tf.Example features).
_EXAMPLE_TYPES = {f.USER_ID: pa.binary(), f.MOVIE_ID: pa.binary(), f.MOVIE_TITLE: pa.binary(),
                  f.MOVIE_GENRES: pa.binary(), f.TIMESTAMP: pa.int64(),
                  f.USER_RATING: pa.float32(), f.CONTEXT_MOVIE_IDS: pa.binary(),
                  f.WINDOW_END: pa.int64(), f.WINDOW_END_ALL: pa.int64()}
_LIST_VALUED = (f.MOVIE_GENRES, f.CONTEXT_MOVIE_IDS)
# What a timeline keeps of each rating: the features of a timeline example's next movie.
_KEPT = tuple(name for name in _EXAMPLE_TYPES
              if name not in (f.CONTEXT_MOVIE_IDS, f.WINDOW_END, f.WINDOW_END_ALL))
# A rating as it crosses Beam's shuffle: a tuple of these fields (rating_fields: as a dict).
_ROW = _KEPT + (_SOURCE_SPLIT,)
_ROW_USER = _ROW.index(f.USER_ID)


def ratings_by_user(source_split: str, batch: pa.RecordBatch
                    ) -> Iterator[Tuple[bytes, List[tuple]]]:
  """(user id, the user's ratings in the batch) for a record batch of rating examples (as
  tfx_bsl decodes them: one list column a feature). Each rating is a row of _ROW's fields:
  the timeline's fields, single values, genres as a list, and the ExampleGen split it came
  from. Rows, not dicts, because they cross Beam's shuffle: coding each rating's keys there
  cost a fifth of the stage's time (3M ratings: 124 s with dicts, 98 s with rows)."""
  columns = {}
  for name in _KEPT:
    index = batch.schema.get_field_index(name)
    if index < 0:
      if name != f.MOVIE_GENRES:  # every rating has one value of the others (ExampleGen)
        raise ValueError(f'the rating examples of split {source_split} have no {name} feature')
      columns[name] = [[]] * batch.num_rows  # no movie of the batch has a genre
    elif name == f.MOVIE_GENRES:
      columns[name] = [genres or [] for genres in batch.column(index).to_pylist()]
    else:
      column = batch.column(index)
      lengths = pc.list_value_length(column).fill_null(0)
      wrong = pc.index(pc.equal(lengths, 1), False).as_py()
      if wrong >= 0:  # ExampleGen writes one; anything else would shift the columns' rows
        raise ValueError(f'a rating example of split {source_split} has '
                         f'{lengths[wrong].as_py()} values of {name}, not one: '
                         f'{batch.slice(wrong, 1).to_pylist()[0]}')
      columns[name] = column.flatten().to_pylist()
  by_user = collections.defaultdict(list)
  splits = itertools.repeat(source_split, batch.num_rows)
  for row in zip(*(columns[name] for name in _KEPT), splits, strict=True):
    by_user[row[_ROW_USER]].append(row)
  return iter(by_user.items())


def rating_fields(row: tuple) -> Dict[str, object]:
  """A row of ratings_by_user as {field: value}, what the timeline rules read."""
  return dict(zip(_ROW, row))


def tie_order(movie_id: bytes) -> Tuple[int, int, bytes]:
  """Sort key among ratings with the same timestamp: numeric ids by value, then others."""
  return (0, int(movie_id), b'') if movie_id.isdigit() else (1, 0, movie_id)


def timeline(ratings: Iterable[Dict[str, object]], min_rating: float) -> List[Dict[str, object]]:
  """One user's ratings at or above min_rating, in time order (ties: see tie_order)."""
  kept = [rating for rating in ratings if rating[f.USER_RATING] >= min_rating]
  return sorted(kept, key=lambda r: (r[f.TIMESTAMP], tie_order(r[f.MOVIE_ID])))


def timeline_examples(ratings: Iterable[Dict[str, object]], min_rating: float,
                      min_timeline_length: int, max_context_length: int
                      ) -> Iterator[Tuple[int, Dict[str, object]]]:
  """(position of the label, example fields) for every movie after a user's first."""
  movies = timeline(ratings, min_rating)
  if len(movies) < min_timeline_length:
    return
  for position in range(1, len(movies)):
    context = movies[max(0, position - max_context_length):position]
    yield position, {**movies[position],
                     f.CONTEXT_MOVIE_IDS: [movie[f.MOVIE_ID] for movie in context]}


def encode_timeline_examples(examples: List[Dict[str, object]]) -> List[bytes]:
  """Serialized timeline tf.Examples: the next movie's rating fields and its
  context_movie_ids, built as columns and encoded in C++ (example_batches)."""
  columns = [pa.array([fields[name] if name in _LIST_VALUED else [fields[name]]
                       for fields in examples], pa.list_(kind))
             for name, kind in _EXAMPLE_TYPES.items()]
  return example_batches.encode_examples(
      pa.RecordBatch.from_arrays(columns, list(_EXAMPLE_TYPES)))


def hash_percentile(user_id: bytes, position: int) -> int:
  """A stable hash of (user, position) in 0..99, the same on every run and runner."""
  digest = hashlib.md5(user_id + b'/' + str(position).encode()).digest()
  return int.from_bytes(digest[:8], 'little') % 100


def eval_split(user_id: bytes, position: int, eval_percent: int) -> bool:
  """Whether this example goes to eval by the 'hash' rule."""
  return hash_percentile(user_id, position) < eval_percent


def example_split(position: int, fields: Dict[str, object], last: int, user_id: bytes,
                  eval_examples: str, eval_percent: int, valid_percent: int) -> str:
  """The split of a user's example at `position` (`last`: the position of the user's last
  example) by the eval_examples rule; valid only when valid_percent is not 0."""
  if eval_examples == 'future':
    return fields[_SOURCE_SPLIT] if fields[_SOURCE_SPLIT] in SPLITS_WITH_VALID else 'train'
  if eval_examples == 'last':
    if position == last:
      return 'eval'
    return f.VALID_SPLIT if valid_percent and position == last - 1 else 'train'
  percentile = hash_percentile(user_id, position)
  if percentile < eval_percent:
    return 'eval'
  return f.VALID_SPLIT if percentile < eval_percent + valid_percent else 'train'


def split_examples(examples: List[Tuple[int, Dict[str, object]]], user_id: bytes,
                   eval_examples: str, eval_percent: int, window_length: int,
                   valid_percent: int = 0) -> Iterator[Tuple[str, Dict]]:
  """(split name, fields with window_end and window_end_all) of one user's (position, fields)
  examples, by the eval_examples rule; window_end marks the user's last training example and
  every window_length-th position before it, window_end_all the same from the user's last
  example of any split (module docstring)."""
  last = examples[-1][0] if examples else None
  splits = [example_split(position, fields, last, user_id, eval_examples, eval_percent,
                          valid_percent) for position, fields in examples]
  last_train = max((position for (position, _), split in zip(examples, splits)
                    if split == 'train'), default=None)
  for (position, fields), split in zip(examples, splits):
    window_end = split == 'train' and (last_train - position) % window_length == 0
    yield split, {**fields, f.WINDOW_END: int(window_end),
                  f.WINDOW_END_ALL: int((last - position) % window_length == 0)}


@beam.ptransform_fn
def BuildTimelines(rating_batches: beam.PCollection, min_rating: float,
                   min_timeline_length: int, max_context_length: int, eval_percent: int,
                   eval_examples: str = 'hash', valid_percent: int = 0):
  """(source split name, record batch of rating examples) -> (split index in
  SPLITS_WITH_VALID, list of serialized timeline examples): one element per user and split,
  not per example (Beam's cost per element was most of the stage's time)."""
  if eval_examples not in EVAL_RULES:
    raise ValueError(f'eval_examples {eval_examples!r} is not one of {EVAL_RULES}')

  def examples_of_user(user_and_parts):
    user, parts = user_and_parts
    ratings = (rating_fields(row) for part in parts for row in part)
    examples = list(timeline_examples(ratings, min_rating, min_timeline_length,
                                      max_context_length))
    by_split = [[] for _ in SPLITS_WITH_VALID]
    for split, fields in split_examples(examples, user, eval_examples, eval_percent,
                                        max_context_length, valid_percent):
      by_split[SPLITS_WITH_VALID.index(split)].append(fields)
    for index, fields in enumerate(by_split):
      if fields:
        yield index, encode_timeline_examples(fields)

  return (rating_batches
          | 'ByUser' >> beam.FlatMapTuple(ratings_by_user)
          | 'Group' >> beam.GroupByKey()
          | 'Examples' >> beam.FlatMap(examples_of_user))


@tfx.dsl.components.component(use_beam=True)
def TimelineGen(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    timelines: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    min_rating: tfx.dsl.components.Parameter[float] = 2.0,
    min_timeline_length: tfx.dsl.components.Parameter[int] = 3,
    max_context_length: tfx.dsl.components.Parameter[int] = 10,
    eval_percent: tfx.dsl.components.Parameter[int] = 10,
    eval_examples: tfx.dsl.components.Parameter[str] = 'future',
    valid_percent: tfx.dsl.components.Parameter[int] = 0,
    data_settings: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.HyperParameters] = None,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None) -> None:
  """Builds the sequential model's train/eval examples (and valid ones, when the ratings have
  a valid split) from every split of the ratings; eval_examples: which are evaluated, one of
  EVAL_RULES (module docstring); valid_percent: the 'hash' rule's share of valid examples;
  data_settings: SettingsGen's choice (components/settings_gen.py), whose max_context_length,
  when it has one, replaces the parameter's."""
  if data_settings is not None:
    max_context_length = int(read_settings(data_settings.uri).get('max_context_length',
                                                                  max_context_length))
  if min_timeline_length < 2:
    raise ValueError(f'min_timeline_length must be >= 2, got {min_timeline_length}')
  if max_context_length < 1:
    raise ValueError(f'max_context_length must be >= 1, got {max_context_length}')
  if not 0 < eval_percent < 100:
    raise ValueError(f'eval_percent must be in 1..99, got {eval_percent}')
  if eval_examples not in EVAL_RULES:
    raise ValueError(f'eval_examples {eval_examples!r} is not one of {EVAL_RULES}')
  source_splits = artifact_utils.decode_split_names(examples.split_names)
  with_valid = f.VALID_SPLIT in source_splits
  if with_valid and not 0 < valid_percent < 100 - eval_percent:
    raise ValueError(f'the ratings have a {f.VALID_SPLIT} split: valid_percent must be in '
                     f'1..{99 - eval_percent}, got {valid_percent}')
  splits = SPLITS_WITH_VALID if with_valid else SPLITS
  timelines.split_names = artifact_utils.encode_split_names(list(splits))
  with beam_pipeline as pipeline:
    ratings = pipeline | 'Read' >> example_batches.ReadExampleBatches({
        split: os.path.join(artifact_utils.get_split_uri([examples], split), '*')
        for split in source_splits})
    by_split = (ratings
                | 'Build' >> BuildTimelines(min_rating, min_timeline_length, max_context_length,
                                            eval_percent, eval_examples,
                                            valid_percent if with_valid else 0)
                | 'Split' >> beam.Partition(lambda split_and_example, _: split_and_example[0],
                                            len(SPLITS_WITH_VALID)))
    for split, examples_of_split in zip(SPLITS_WITH_VALID, by_split):
      if split not in splits:
        continue
      _ = (examples_of_split
           | f'Drop{split}' >> beam.Values()
           | f'Write{split}' >> beam.io.Write(example_batches.ExampleBatchSink(
               os.path.join(timelines.uri, f'Split-{split}', 'data_tfrecord'))))
