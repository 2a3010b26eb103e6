"""Span folders: cutting a dataset into spans by time, joining spans into a window, the replay's
cut and the CLI's checks. (Span runs through the pipeline: tests/test_pipeline.py
four_movie_runs.)"""
import pathlib
import shutil

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.ingest import movielens, spans, synthetic
from components.ingest.span_window import join_spans, window_splits, SpanSplits
from pipeline import cli, replay

DAY = 24 * 3600


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  return synthetic.generate(tmp_path_factory.mktemp('spans') / 'source', num_users=50,
                            num_movies=60, num_ratings=1500, seed=4)


def _timestamps(folder):
  return [rating.timestamp for rating in movielens.iter_ratings(folder)]


def test_write_spans_cuts_the_ratings_by_time_and_grows_the_movies_and_users(dataset,
                                                                             tmp_path):
  times = sorted(_timestamps(dataset))
  bounds = [times[600], times[900], times[1200]]
  written = spans.write_spans(dataset, tmp_path / 'spans', bounds)
  assert [span.span for span in written] == [1, 2, 3]
  assert spans.span_numbers(tmp_path / 'spans') == [1, 2, 3]
  ranges = [(None, bounds[0]), (bounds[0], bounds[1]), (bounds[1], bounds[2])]
  known_movies = set()
  for span, (start, end) in zip(written, ranges):
    stamps = _timestamps(span.folder)
    assert len(stamps) == span.num_ratings > 0 and (span.start, span.end) == (start, end)
    assert all((start is None or start <= t) and t < end for t in stamps)
    # Every rating joins with its movie and user: the span's files hold all it names.
    examples = list(movielens.iter_examples(span.folder))
    movies = set(movielens.read_movies(span.folder))
    assert {example['movie_id'] for example in examples} <= movies
    assert movies >= known_movies  # grown, never shrunk
    known_movies = movies
    assert (span.folder / 'u.genre').read_bytes() == (dataset / 'u.genre').read_bytes()
  # Ratings at or after the last boundary are left out; none is lost before it.
  assert sum(span.num_ratings for span in written) == sum(t < bounds[-1] for t in times)


def test_a_pair_rated_again_later_is_in_both_spans(dataset, tmp_path):
  source = tmp_path / 'rerated'
  shutil.copytree(dataset, source)
  user, movie, _, timestamp = (source / 'u.data').read_text().splitlines()[0].split('\t')
  later = max(_timestamps(dataset)) + DAY
  with open(source / 'u.data', 'a', encoding='utf-8') as ratings:
    ratings.write(f'{user}\t{movie}\t1\t{later}\n')
  written = spans.write_spans(source, tmp_path / 'spans', [later, later + DAY])
  assert [span.num_ratings for span in written] == [1500, 1]
  (rerating,) = movielens.iter_ratings(written[1].folder)
  assert (rerating.user_id, rerating.movie_id, rerating.rating) == (user, movie, 1)


def test_write_spans_names_a_bad_line(dataset, tmp_path):
  source = tmp_path / 'bad'
  shutil.copytree(dataset, source)
  lines = (source / 'u.data').read_text().splitlines(keepends=True)
  lines[9] = '1\t2\tgood\t881250949\n'
  (source / 'u.data').write_text(''.join(lines))
  with pytest.raises(movielens.MovieLensFormatError, match=r'u\.data:10'):
    spans.write_spans(source, tmp_path / 'spans', [max(_timestamps(dataset))])


def _examples_artifact(folder, artifact_id, span, splits):
  """An ExampleGen-like Examples artifact: splits {name: [movie ids]} as gzipped TFRecords."""
  artifact = standard_artifacts.Examples()
  artifact.uri = str(folder)
  artifact.id = artifact_id
  artifact.split_names = artifact_utils.encode_split_names(list(splits))
  artifact.set_int_custom_property('span', span)
  for split, movies in splits.items():
    path = pathlib.Path(folder, f'Split-{split}')
    path.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path / 'data_tfrecord-00000-of-00001.gz'), 'GZIP') as writer:
      for movie in movies:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            'movie_id': tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[movie.encode()]))})).SerializeToString())
  return artifact


def _movie_ids(folder):
  ids = []
  for path in sorted(pathlib.Path(folder).iterdir()):
    for record in tf.data.TFRecordDataset(str(path), compression_type='GZIP'):
      ids.append(tf.train.Example.FromString(record.numpy()).features.feature['movie_id']
                 .bytes_list.value[0].decode())
  return sorted(ids)


def test_the_window_evaluates_the_newest_spans_eval_and_trains_on_the_rest(tmp_path):
  """Span 2 was ingested twice (its files changed): the later artifact replaces the first."""
  artifacts = [
      _examples_artifact(tmp_path / '1', 11, 1, {'train': ['a', 'b'], 'eval': ['c']}),
      _examples_artifact(tmp_path / '2-old', 12, 2, {'train': ['x'], 'eval': ['y']}),
      _examples_artifact(tmp_path / '3', 14, 3, {'train': ['f', 'g'], 'eval': ['h', 'i']}),
      _examples_artifact(tmp_path / '2', 13, 2, {'train': ['d'], 'eval': ['e']}),
  ]
  joined = standard_artifacts.Examples()
  joined.uri = str(tmp_path / 'window')
  assert join_spans(artifacts, joined) == [1, 2, 3]
  assert artifact_utils.decode_split_names(joined.split_names) == ['train', 'eval']
  assert _movie_ids(tmp_path / 'window' / 'Split-train') == ['a', 'b', 'c', 'd', 'e', 'f', 'g']
  assert _movie_ids(tmp_path / 'window' / 'Split-eval') == ['h', 'i']
  assert joined.get_string_custom_property('spans') == '1-3'
  assert joined.get_int_custom_property('span') == 3


def test_window_splits_of_one_span_keep_its_splits():
  assert window_splits([SpanSplits(5, {'train': 't', 'eval': 'e'})]) == {
      'train': [(5, 'train', 't')], 'eval': [(5, 'eval', 'e')]}
  with pytest.raises(ValueError, match='ingested none'):
    window_splits([])


def test_replay_cut_starts_where_the_time_split_would_and_steps_by_days():
  times = list(range(0, 100 * DAY, DAY))  # a rating a day for 100 days
  bounds = replay.span_boundaries(times, span_days=7)
  assert bounds[0] == 80 * DAY  # 80% of the ratings are before it
  assert bounds == [80 * DAY, 87 * DAY, 94 * DAY, 99 * DAY + 1]
  assert replay.span_boundaries(times, 10, start=50 * DAY, until=70 * DAY) == [
      50 * DAY, 60 * DAY, 70 * DAY]
  with pytest.raises(ValueError, match='--from 1970-01-01 must lie after the first rating'):
    replay.span_boundaries(times, 7, start=0)
  with pytest.raises(ValueError, match='--span-days must be positive'):
    replay.span_boundaries(times, 0)


def test_replay_refuses_a_bad_date_and_a_folder_of_spans(dataset, tmp_path, capsys):
  with pytest.raises(SystemExit):
    cli.main(['replay', '--from', '1998-13-01'])
  assert "expected a date as YYYY-MM-DD, got '1998-13-01'" in capsys.readouterr().err
  spans.write_spans(dataset, tmp_path / 'spans', [max(_timestamps(dataset)) + 1])
  assert cli.main(['replay', '--data-dir', str(tmp_path / 'spans'), '--workdir',
                   str(tmp_path / 'workdir')]) == 2
  assert 'holds span folders already' in capsys.readouterr().err


def test_run_names_the_newest_span_folder_when_it_is_not_a_movielens_folder(dataset, tmp_path,
                                                                           capsys):
  spans.write_spans(dataset, tmp_path / 'spans', [max(_timestamps(dataset)) + 1])
  (tmp_path / 'spans' / 'span-2').mkdir()
  assert cli.main(['run', '--data-dir', str(tmp_path / 'spans'), '--workdir',
                   str(tmp_path / 'workdir')]) == 2
  error = capsys.readouterr().err
  assert f"{tmp_path / 'spans' / 'span-2'}: missing MovieLens ratings file" in error
  (tmp_path / 'spans' / 'span-2').rmdir()
  assert cli.main(['run', '--data-dir', str(tmp_path / 'spans'), '--workdir',
                   str(tmp_path / 'workdir'), '--train-spans', '0']) == 2
  assert 'train_spans must be at least 1, got 0' in capsys.readouterr().err


@pytest.mark.parametrize('train_spans, joined', [(2, [2, 3]), (None, [1, 2, 3])])
def test_train_spans_picks_the_newest_spans_for_the_window(tmp_path, train_spans, joined):
  """The pipeline's resolver (TFX's SpanRangeStrategy with the pipeline's range config) over
  three ingested spans, then the window it feeds."""
  from pipeline.config import SPAN_WINDOW_RESOLVER, PipelineConfig
  from pipeline.pipeline import create_pipeline
  config = PipelineConfig(data_dir=str(tmp_path / 'data'), workdir=str(tmp_path / 'workdir'),
                          spans=True, train_spans=train_spans)
  (resolver,) = [node for node in create_pipeline(config).components
                 if node.id == SPAN_WINDOW_RESOLVER]
  strategy = resolver.exec_properties['resolver_class'](
      **resolver.exec_properties['source_uri'])
  ingested = [_examples_artifact(tmp_path / str(span), 20 + span, span,
                                 {'train': [f'{span}t'], 'eval': [f'{span}e']})
              for span in (1, 2, 3)]
  picked = strategy._resolve({'examples': ingested})['examples']  # pylint: disable=protected-access
  window = standard_artifacts.Examples()
  window.uri = str(tmp_path / 'window')
  assert join_spans(picked, window) == joined
  assert _movie_ids(tmp_path / 'window' / 'Split-eval') == ['3e']


def test_one_train_span_needs_no_window():
  """ExampleGen's output is the window then (and the spec compiles for Kubeflow)."""
  from pipeline.config import PipelineConfig
  from pipeline.pipeline import create_pipeline
  ids = {node.id for node in create_pipeline(PipelineConfig(
      data_dir='data', workdir='workdir', spans=True, train_spans=1)).components}
  assert 'SpanWindow' not in ids and 'RefitBlessing' in ids


def test_replay_warns_of_drift_by_default_and_says_so(capsys):
  """Consecutive spans differ in who rates; `run` keeps stopping on drift."""
  assert cli.build_parser().parse_args(['replay']).drift_action == 'warn'
  assert cli.build_parser().parse_args(['run']).drift_action == 'stop'
  with pytest.raises(SystemExit):
    cli.main(['replay', '--help'])
  help_text = ' '.join(capsys.readouterr().out.split())
  assert 'or off (no comparison) (default: warn)' in help_text


def test_a_replay_resumed_with_another_cut_is_refused(dataset, tmp_path, capsys):
  """The cut is recorded before the first run: a replay that died in its first run and is
  started again with another --from would otherwise mix two cuts' spans."""
  def dies(span_args):
    raise RuntimeError('the first run died')

  argv = ['replay', '--data-dir', str(dataset), '--workdir', str(tmp_path / 'workdir'),
          '--span-days', '30']
  with pytest.raises(RuntimeError, match='the first run died'):
    replay.replay(cli.build_parser().parse_args(argv), run_span=dies)
  assert spans.span_numbers(tmp_path / 'workdir' / 'replay' / 'data') == [1]
  moved = replay.replay(cli.build_parser().parse_args([*argv, '--from', '1998-01-01']),
                        run_span=dies)
  assert moved == 2
  assert 'records a replay cut differently' in capsys.readouterr().err


def test_csv_spans_repeat_the_header_lines_and_hold_no_users_file(tmp_path):
  from tests.test_csv_readers import RATINGS, write_csv_dataset
  source = write_csv_dataset(tmp_path / 'csv')
  times = sorted(_timestamps(source))
  written = spans.write_spans(source, tmp_path / 'spans', [times[1], times[-1] + 1])
  assert [span.num_ratings for span in written] == [1, 2]
  for span in written:
    assert (span.folder / 'ratings.csv').read_text().startswith(RATINGS.split('\n')[0] + '\n')
    assert (span.folder / 'movies.csv').read_text().startswith('movieId,title,genres\n')
    assert not (span.folder / 'users.csv').exists()
  assert [e['user_rating'] for e in movielens.iter_examples(written[1].folder)] == [4.0, 0.5]
