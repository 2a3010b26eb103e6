"""TimelineGen's rules on hand-made timelines: order and ties, min_rating, short histories,
users below the minimum length, context windows, the split; and the Beam transform itself."""
import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from tfx_bsl.coders import example_coder

from components import features as f
from components import timelines


def rating(user, movie, timestamp, value=4.0):
  return {f.USER_ID: user, f.MOVIE_ID: movie, f.MOVIE_TITLE: b'Title ' + movie,
          f.MOVIE_GENRES: [b'Drama'], f.TIMESTAMP: timestamp, f.USER_RATING: value}


def examples(ratings, min_rating=2.0, min_timeline_length=3, max_context_length=10):
  return [(position, fields[f.CONTEXT_MOVIE_IDS], fields[f.MOVIE_ID])
          for position, fields in timelines.timeline_examples(
              ratings, min_rating, min_timeline_length, max_context_length)]


def test_timestamp_ties_are_ordered_by_numeric_movie_id_whatever_the_input_order():
  ratings = [rating(b'1', b'10', 100), rating(b'1', b'9', 100), rating(b'1', b'200', 50),
             rating(b'1', b'100', 100)]
  expected = [b'200', b'9', b'10', b'100']  # 50 first; then the tie at 100: 9 < 10 < 100
  assert [r[f.MOVIE_ID] for r in timelines.timeline(ratings, 2.0)] == expected
  assert [r[f.MOVIE_ID] for r in timelines.timeline(ratings[::-1], 2.0)] == expected


def test_ratings_below_min_rating_are_left_out_of_the_timeline():
  ratings = [rating(b'1', b'1', 1), rating(b'1', b'2', 2, value=1.0), rating(b'1', b'3', 3),
             rating(b'1', b'4', 4, value=2.0)]
  assert examples(ratings) == [(1, [b'1'], b'3'), (2, [b'1', b'3'], b'4')]


def test_users_below_the_minimum_length_give_no_examples():
  two = [rating(b'1', b'1', 1), rating(b'1', b'2', 2)]
  assert examples(two) == []
  assert examples(two, min_timeline_length=2) == [(1, [b'1'], b'2')]
  # A third rating below min_rating does not count towards the length.
  assert examples(two + [rating(b'1', b'3', 3, value=1.0)]) == []


def test_short_histories_give_short_contexts_and_long_ones_keep_the_most_recent():
  ratings = [rating(b'1', str(movie).encode(), movie) for movie in range(1, 7)]
  got = examples(ratings, max_context_length=3)
  assert got[0] == (1, [b'1'], b'2')  # shorter than the window: not padded
  assert got[1] == (2, [b'1', b'2'], b'3')
  assert got[-1] == (5, [b'3', b'4', b'5'], b'6')  # the last 3, oldest first
  assert len(got) == 5  # every movie after the first is a label once


def test_the_split_is_stable_and_near_the_requested_share():
  decisions = [timelines.eval_split(str(user).encode(), position, 10)
               for user in range(200) for position in range(1, 20)]
  assert decisions == [timelines.eval_split(str(user).encode(), position, 10)
                       for user in range(200) for position in range(1, 20)]
  assert 0.07 < sum(decisions) / len(decisions) < 0.13


def serialized_rating(fields) -> bytes:
  """A rating example as ExampleGen writes it."""
  feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(
      value=fields[name] if name == f.MOVIE_GENRES else [fields[name]]))
      for name in (f.USER_ID, f.MOVIE_ID, f.MOVIE_TITLE, f.MOVIE_GENRES)}
  feature[f.TIMESTAMP] = tf.train.Feature(int64_list=tf.train.Int64List(
      value=[fields[f.TIMESTAMP]]))
  feature[f.USER_RATING] = tf.train.Feature(float_list=tf.train.FloatList(
      value=[fields[f.USER_RATING]]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def rating_batch(ratings):
  """A record batch of rating examples, decoded as TimelineGen reads them (tfx_bsl)."""
  return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
      [serialized_rating(r) for r in ratings])


def test_beam_transform_groups_users_across_batches_and_writes_parsable_examples():
  # User 1's ratings come in two batches of two splits; user 2 is too short.
  batches = [('train', rating_batch([rating(b'1', b'5', 30), rating(b'2', b'7', 10),
                                     rating(b'1', b'3', 10, value=4.5)])),
             ('eval', rating_batch([rating(b'1', b'4', 20), rating(b'2', b'8', 20)]))]

  def summary(example):
    example = tf.train.Example.FromString(example).features.feature
    return (example[f.USER_ID].bytes_list.value[0],
            tuple(example[f.CONTEXT_MOVIE_IDS].bytes_list.value),
            example[f.MOVIE_ID].bytes_list.value[0],
            example[f.MOVIE_TITLE].bytes_list.value[0],
            tuple(example[f.MOVIE_GENRES].bytes_list.value),
            example[f.TIMESTAMP].int64_list.value[0],
            example[f.USER_RATING].float_list.value[0])

  with beam.Pipeline() as pipeline:
    built = (pipeline | beam.Create(batches)
             | timelines.BuildTimelines(2.0, 3, 10, 10, eval_examples='future')
             | beam.FlatMapTuple(lambda split, examples: [
                 (timelines.SPLITS_WITH_VALID[split], summary(example)) for example in examples]))
    assert_that(built, equal_to([
        ('eval', (b'1', (b'3',), b'4', b'Title 4', (b'Drama',), 20, 4.0)),
        ('train', (b'1', (b'3', b'4'), b'5', b'Title 5', (b'Drama',), 30, 4.0))]))


def test_ratings_of_a_batch_keep_their_fields_and_split_and_group_by_user():
  ratings = [rating(b'1', b'5', 30), rating(b'2', b'7', 10, value=0.5),
             {**rating(b'1', b'3', 10), f.MOVIE_GENRES: []}]
  grouped = {user: [timelines.rating_fields(row) for row in rows] for user, rows in
             timelines.ratings_by_user('eval', rating_batch(ratings))}
  assert grouped == {b'1': [{**ratings[0], 'source_split': 'eval'},
                            {**ratings[2], 'source_split': 'eval'}],
                     b'2': [{**ratings[1], 'source_split': 'eval'}]}


@pytest.mark.parametrize('written', ['empty', 'absent'])
def test_movies_without_genres_give_empty_genres(written):
  """ExampleGen writes an empty genres feature; a batch where no example has the feature at
  all has no such column."""
  examples = []
  for movie, time in ((b'5', 30), (b'6', 40)):
    example = tf.train.Example.FromString(serialized_rating(
        {**rating(b'1', movie, time), f.MOVIE_GENRES: []}))
    if written == 'absent':
      del example.features.feature[f.MOVIE_GENRES]
    examples.append(example.SerializeToString())
  batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(examples)
  assert (f.MOVIE_GENRES in batch.schema.names) == (written == 'empty')
  rows = dict(timelines.ratings_by_user('train', batch))[b'1']
  assert [timelines.rating_fields(row)[f.MOVIE_GENRES] for row in rows] == [[], []]


@pytest.mark.parametrize('timestamps', [[], [10, 20]])
def test_a_rating_without_exactly_one_value_of_a_field_is_refused_naming_it(timestamps):
  good = serialized_rating(rating(b'1', b'5', 30))
  bad = tf.train.Example.FromString(serialized_rating(rating(b'1', b'6', 40)))
  del bad.features.feature[f.TIMESTAMP].int64_list.value[:]
  bad.features.feature[f.TIMESTAMP].int64_list.value.extend(timestamps)
  batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
      [good, bad.SerializeToString()])
  with pytest.raises(ValueError, match=rf"split eval has {len(timestamps)} values of timestamp, "
                                       r"not one: .*b'6'"):
    timelines.ratings_by_user('eval', batch)


@pytest.mark.parametrize('bad', [dict(min_timeline_length=1), dict(max_context_length=0),
                                 dict(eval_percent=100)])
def test_bad_parameters_are_refused_naming_them(bad):
  name = next(iter(bad))
  with pytest.raises(ValueError, match=name):
    timelines.TimelineGen.test_call(examples=None, timelines=None, beam_pipeline=None,
                                    **{**dict(min_rating=2.0, min_timeline_length=3,
                                              max_context_length=10, eval_percent=10), **bad})


def _split_of(ratings_and_sources, eval_examples, eval_percent=10, valid_percent=0):
  """(split, context, next movie) of one user's examples under an eval_examples rule."""
  ratings = [{**rating, timelines._SOURCE_SPLIT: source}
             for rating, source in ratings_and_sources]
  built = list(timelines.timeline_examples(ratings, 2.0, 2, 10))
  return [(split, fields[f.CONTEXT_MOVIE_IDS], fields[f.MOVIE_ID]) for split, fields in
          timelines.split_examples(built, b'1', eval_examples, eval_percent, 10,
                                   valid_percent)]


def test_the_future_rule_evaluates_the_ratings_of_the_eval_split_after_the_history_so_far():
  # The time split: ratings 30 and 40 are at or after the cut.
  user = [(rating(b'1', b'1', 10), 'train'), (rating(b'1', b'2', 20), 'train'),
          (rating(b'1', b'3', 30), 'eval'), (rating(b'1', b'4', 40), 'eval')]
  assert _split_of(user, 'future') == [
      ('train', [b'1'], b'2'),
      ('eval', [b'1', b'2'], b'3'),  # the past's history ...
      ('eval', [b'1', b'2', b'3'], b'4')]  # ... and the future's own earlier ratings


def test_under_the_future_rule_no_training_example_holds_a_future_rating():
  # Hash-split ratings read as if time-split would leak; the time split never interleaves.
  user = [(rating(b'1', str(movie).encode(), movie), 'train' if movie < 6 else 'eval')
          for movie in range(1, 10)]
  for split, context, movie in _split_of(user, 'future'):
    if split == 'train':
      assert int(movie) < 6 and all(int(m) < 6 for m in context)


def test_the_last_rule_holds_out_each_user_s_last_movie_only():
  user = [(rating(b'1', str(movie).encode(), movie), 'train') for movie in range(1, 5)]
  assert [split for split, _, _ in _split_of(user, 'last')] == ['train', 'train', 'eval']
  assert _split_of(user, 'last')[-1] == ('eval', [b'1', b'2', b'3'], b'4')


def test_the_hash_rule_is_the_stable_hash_of_user_and_position():
  user = [(rating(b'1', str(movie).encode(), movie), 'eval') for movie in range(1, 40)]
  expected = ['eval' if timelines.eval_split(b'1', position, 30) else 'train'
              for position in range(1, 39)]
  assert [split for split, _, _ in _split_of(user, 'hash', 30)] == expected


def test_the_future_rule_validates_on_the_valid_split_between_train_and_eval():
  # The time split with a validation slice: rating 30 is in it, 40 in the future.
  user = [(rating(b'1', b'1', 10), 'train'), (rating(b'1', b'2', 20), 'train'),
          (rating(b'1', b'3', 30), 'valid'), (rating(b'1', b'4', 40), 'eval')]
  assert _split_of(user, 'future', valid_percent=10) == [
      ('train', [b'1'], b'2'),
      ('valid', [b'1', b'2'], b'3'),
      ('eval', [b'1', b'2', b'3'], b'4')]


def test_the_last_rule_validates_on_each_user_s_movie_before_the_last():
  user = [(rating(b'1', str(movie).encode(), movie), 'train') for movie in range(1, 6)]
  assert [split for split, _, _ in _split_of(user, 'last', valid_percent=10)] == [
      'train', 'train', 'valid', 'eval']


def test_the_hash_rule_validates_on_the_next_valid_percent_of_the_hash():
  user = [(rating(b'1', str(movie).encode(), movie), 'eval') for movie in range(1, 80)]
  percentiles = [timelines.hash_percentile(b'1', position) for position in range(1, 79)]
  expected = ['eval' if p < 30 else 'valid' if p < 50 else 'train' for p in percentiles]
  assert [split for split, _, _ in _split_of(user, 'hash', 30, valid_percent=20)] == expected
  assert {'train', 'valid', 'eval'} == set(expected)


def test_an_unknown_rule_is_refused_naming_the_known_ones():
  with pytest.raises(ValueError, match="'future', 'last', 'hash'"):
    with beam.Pipeline() as pipeline:
      _ = pipeline | beam.Create([]) | timelines.BuildTimelines(2.0, 3, 10, 10, 'sometimes')


@pytest.mark.parametrize('eval_examples,valid_percent,last_train', [
    ('last', 0, b'10'), ('future', 0, b'9'), ('last', 10, b'9'), ('future', 10, b'8')])
def test_window_ends_tile_the_training_timeline_back_from_its_last_example(
    eval_examples, valid_percent, last_train):
  # Eleven movies; with contexts of 3 each window is 4 movies. 'future': the last two are the
  # eval split's (with a valid split, movie 9 is valid's), 'last': the last one (and with a
  # valid split, the one before it is valid's).
  ratings = [{**rating(b'1', str(movie).encode(), 10 * movie), timelines._SOURCE_SPLIT:
              'eval' if movie > 9 else 'valid' if valid_percent and movie == 9 else 'train'}
             for movie in range(1, 12)]
  built = list(timelines.timeline_examples(ratings, 2.0, 2, 3))
  examples = list(timelines.split_examples(built, b'1', eval_examples, 10, 3, valid_percent))
  ends = [(fields[f.CONTEXT_MOVIE_IDS], fields[f.MOVIE_ID]) for split, fields in examples
          if fields[f.WINDOW_END]]
  assert ends[-1][1] == last_train
  assert all(split == 'train' for split, fields in examples if fields[f.WINDOW_END])
  # Every training next movie is a target exactly once: in a window's context after its
  # first movie, or as its next movie.
  targets = [movie for context, next_movie in ends for movie in context[1:] + [next_movie]]
  trained = [fields[f.MOVIE_ID] for split, fields in examples if split == 'train']
  assert sorted(targets) == sorted(trained)
  # The refit's windows (every split) end at the user's last example and tile all of them.
  ends_all = [(fields[f.CONTEXT_MOVIE_IDS], fields[f.MOVIE_ID]) for _, fields in examples
              if fields[f.WINDOW_END_ALL]]
  assert ends_all[-1][1] == b'11'
  targets = [movie for context, next_movie in ends_all for movie in context[1:] + [next_movie]]
  assert sorted(targets) == sorted(fields[f.MOVIE_ID] for _, fields in examples)
