"""The multitask and sequential models through the real pipeline on small synthetic data:
blessed and pushed, and what their serving signatures promise (ratings in range, any history
length, exclusions, clear errors on bad input). The sequential run is the pipeline's default
(no --model, the time split): it answers users the training data never saw."""
import contextlib
import io
import json
import os
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils

from components.ingest import synthetic
from pipeline.baselines import ratings_of_split
from pipeline.results import latest_run_results
from serving import saved_model
from serving.recommendations import make_request
from tests.conftest import SMALL, TOP_K, run_pipeline


def _pushed_model(workdir, name):
  return tf.saved_model.load(str(saved_model.latest_version_dir(
      pathlib.Path(workdir) / 'serving_models' / name)))


@pytest.fixture(scope='module')
def csv_dataset(tmp_path_factory):
  """The small dataset's size in the CSV family's format (ml-latest-small's): ratings.csv and
  movies.csv with headers and quoted titles, half-star ratings, no users file."""
  return synthetic.generate(tmp_path_factory.mktemp('csv') / 'synthetic', fmt='csv', **SMALL)


@pytest.fixture(scope='module')
def multitask_run(csv_dataset, tmp_path_factory):
  """The multitask model on CSV data: its rating head learns and clips half stars."""
  workdir = tmp_path_factory.mktemp('multitask')
  # The random split: every user is in training, so every user can be rated.
  exit_code = run_pipeline(csv_dataset, workdir, '--model', 'multitask', '--split', 'random',
                           '--max-rmse', '1.2', '--no-refit')  # refit: the sequential run's
  return exit_code, workdir, latest_run_results(str(workdir / 'metadata.sqlite'))


@pytest.fixture(scope='module')
def portable_pipelines():
  """The Beam pipelines Beam's portable runner ran during the module's default run."""
  return []


@pytest.fixture(scope='module')
def sequential_run_output():
  """What the module's default run printed."""
  return []


@pytest.fixture(scope='module')
def sequential_run(small_dataset, tmp_path_factory, portable_pipelines, sequential_run_output):
  """The default run (the sequential model, gated on the time split, refitted), one model
  instead of the tuned ensemble of 3 to save test time (ensembles: the exclusions test); its
  data stages through Beam's portable runner (--beam-preset portable-local), counted in
  portable_pipelines; 2 training steps traced by TensorBoard's profiler. What it printed is
  in sequential_run_output."""
  from apache_beam.runners.portability import portable_runner
  run_on_portable_runner = portable_runner.PortableRunner.run_pipeline

  def counting_run_pipeline(self, pipeline, options):
    portable_pipelines.append(pipeline)
    return run_on_portable_runner(self, pipeline, options)

  workdir = tmp_path_factory.mktemp('sequential')
  printed = io.StringIO()
  with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
    patch.setattr(portable_runner.PortableRunner, 'run_pipeline', counting_run_pipeline)
    exit_code = run_pipeline(small_dataset, workdir, '--ensemble-size', '1', '--beam-preset',
                             'portable-local', '--profile-steps', '2')
  sequential_run_output.append(printed.getvalue())
  print(printed.getvalue())
  return exit_code, workdir, latest_run_results(str(workdir / 'metadata.sqlite'))


def test_the_default_run_goes_through_beams_portable_runner(sequential_run, portable_pipelines):
  """The Fn API path of Flink, Spark and Dataflow, with a local job service: DoFns must pickle
  and hold no in-process state, or this fails here rather than on a cluster."""
  exit_code, _, results = sequential_run
  assert exit_code == 0 and results.pushed
  # ExampleGen, StatisticsGen, TimelineGen, Transform and the Evaluator each ran a Beam
  # pipeline through it.
  assert len(portable_pipelines) >= 5


def test_multitask_is_gated_on_accuracy_and_rmse_and_pushed(multitask_run):
  exit_code, workdir, results = multitask_run
  assert exit_code == 0 and results.blessed and results.pushed
  assert len(saved_model.version_dirs(workdir / 'serving_models' / 'multitask')) == 1
  examples = results.outputs[('FileBasedExampleGen', 'Examples')]
  eval_ratings = np.array(ratings_of_split(examples, 'eval').ratings)
  train_mean = np.mean(ratings_of_split(examples, 'train').ratings)
  constant_rmse = np.sqrt(np.mean((eval_ratings - train_mean) ** 2))
  assert results.metrics['rating_rmse'] < constant_rmse  # learned more than the mean
  assert results.metrics['top_100_accuracy'] > 0.3


def test_multitask_predicted_ratings_stay_on_the_half_star_scale_and_unknown_ids_are_refused(
    multitask_run):
  _, workdir, results = multitask_run
  schema = io_utils.parse_pbtxt_file(os.path.join(
      results.outputs[('ImportSchemaGen', 'Schema')], 'schema.pbtxt'), schema_pb2.Schema())
  (rating,) = [feature for feature in schema.feature if feature.name == 'user_rating']
  assert (rating.float_domain.min, rating.float_domain.max) == (0.5, 5.0)
  rate = _pushed_model(workdir, 'multitask').signatures['predict_rating']
  users = [str(user) for user in range(1, 151)]
  movies = [str(movie) for movie in range(1, 201)]
  pairs = [(user, movie) for user in users[::7] for movie in movies]
  ratings = rate(user_id=tf.constant([u for u, _ in pairs]),
                 movie_id=tf.constant([m for _, m in pairs]))['rating'].numpy()
  assert ratings.shape == (len(pairs),)
  assert np.all((ratings >= 0.5) & (ratings <= 5.0))
  assert ratings.std() > 0.05  # not one constant
  with pytest.raises(tf.errors.InvalidArgumentError, match='unknown movie_id'):
    rate(user_id=tf.constant(['1']), movie_id=tf.constant(['no-such-movie']))
  with pytest.raises(tf.errors.InvalidArgumentError, match='unknown user_id'):
    rate(user_id=tf.constant(['no-such-user']), movie_id=tf.constant(['1']))


def test_multitask_recommends_the_popular_to_an_unknown_user_but_will_not_rate_for_one(
    multitask_run):
  _, workdir, _ = multitask_run
  model = _pushed_model(workdir, 'multitask')
  answer = model.signatures['serving_default'](user_id=tf.constant(['1', 'no-such-user']))
  assert answer['strategy'].numpy().tolist() == [b'user', b'popular']
  with pytest.raises(tf.errors.InvalidArgumentError, match='unknown user_id'):
    model.signatures['predict_rating'](user_id=tf.constant(['no-such-user']),
                                       movie_id=tf.constant(['1']))


def test_multitask_rates_through_tf_serving_regress_api_over_rest_and_grpc(multitask_run):
  """regress_rating takes tf.Examples (user_id, movie_id), as TF Serving's Regress and
  MultiInference send them, and answers what predict_rating answers."""
  from serving.config_files import ModelSource
  from serving.server import ModelServer, ServerOptions
  from tests.serving_endpoints import free_port
  _, workdir, _ = multitask_run
  base_path = workdir / 'serving_models' / 'multitask'
  expected = _pushed_model(workdir, 'multitask').signatures['predict_rating'](
      user_id=tf.constant(['1', '2']), movie_id=tf.constant(['50', '1']))['rating'].numpy()
  server = ModelServer([ModelSource('multitask', str(base_path))],
                       ServerOptions(host='127.0.0.1', port=free_port(),
                                     rest_api_port=free_port()),
                       log=lambda message: None).start()
  try:
    from serving.client import GrpcClient, RestClient, ServingClientError
    rest = RestClient(f'http://127.0.0.1:{server.rest_port}', 'multitask')
    grpc_client = GrpcClient(f'127.0.0.1:{server.grpc_port}', 'multitask')
    examples = [{'user_id': '1', 'movie_id': '50'}, {'user_id': '2', 'movie_id': '1'}]
    for client in (rest, grpc_client):
      ratings = client.regress(examples, signature_name='regress_rating')
      np.testing.assert_allclose(ratings, expected, rtol=1e-5)
    # One user's ratings of several movies: the user as the examples' shared context.
    ratings = rest.regress([{'movie_id': '50'}], context={'user_id': '1'},
                           signature_name='regress_rating')
    np.testing.assert_allclose(ratings, expected[:1], rtol=1e-5)
    with pytest.raises(ServingClientError, match='unknown user_id'):
      grpc_client.regress([{'user_id': 'no-such-user', 'movie_id': '1'}],
                          signature_name='regress_rating')
  finally:
    server.stop()


def test_multitask_rmse_bound_blocks_the_push(multitask_run, csv_dataset):
  _, workdir, _ = multitask_run
  before = saved_model.version_dirs(workdir / 'serving_models' / 'multitask')
  exit_code = run_pipeline(csv_dataset, workdir, '--model', 'multitask', '--split', 'random',
                           '--max-rmse', '0.1', '--no-refit')
  results = latest_run_results(str(workdir / 'metadata.sqlite'))
  assert exit_code == 3 and not results.blessed and not results.pushed
  assert any('rating_rmse' in failure for failure in results.failed_thresholds)
  assert saved_model.version_dirs(workdir / 'serving_models' / 'multitask') == before


def _transformed_train_split(results, splits=('train',)):
  """A run's Transform output: (TFTransformOutput, one pass over its transformed train split,
  or over the splits given)."""
  import tensorflow_transform as tft
  from tfx_bsl.public import tfxio
  tft_output = tft.TFTransformOutput(results.outputs[('Transform', 'TransformGraph')])
  dataset = tfxio.TFExampleRecord(
      [f"{results.outputs[('Transform', 'Examples')]}/Split-{split}/*" for split in splits],
      schema=tft_output.transformed_metadata.schema,
  ).TensorFlowDataset(tfxio.TensorFlowDatasetOptions(batch_size=512, num_epochs=1))
  return tft_output, dataset


def test_multitask_ensemble_serves_its_members_summed_scores_and_mean_rating(multitask_run,
                                                                             tmp_path):
  """Two members trained on the run's Transform output and exported as one SavedModel: it
  scores a movie by the sum of the members' scores and rates it by the mean of their ratings."""
  from components import features as f
  from components.model.catalogue import Catalogue
  from components.model.config import ModelConfig
  from components.trainer import train_and_export

  _, _, results = multitask_run
  tft_output, dataset = _transformed_train_split(results)
  config = ModelConfig(kind='multitask', epochs=2, top_k=TOP_K, ensemble_size=2,
                       index='brute-force')
  trained = train_and_export(config, tft_output, lambda seed: dataset, dataset, None,
                             str(tmp_path / 'serving'))
  model = tf.saved_model.load(str(tmp_path / 'serving'))

  users = [str(user) for user in range(1, 41)]
  user_vocabulary = tft_output.vocabulary_by_name(f.USER_ID_VOCAB)
  user_index = tf.constant([user_vocabulary.index(user.encode()) for user in users], tf.int64)
  catalogue = Catalogue.from_dataset(dataset)
  movie_ids = list(catalogue.movie_ids)
  members = list(zip(trained.query_tower.members, trained.candidate_tower.members,
                     trained.rating_head.members))
  queries = [query({f.USER_ID_INDEX: user_index}).numpy() for query, _, _ in members]
  movies = [candidate(catalogue.candidate_features()).numpy() for _, candidate, _ in members]

  served = model.signatures['serving_default'](user_id=tf.constant(users))
  for row, ids in enumerate(served['movie_ids'].numpy()):
    rows = [movie_ids.index(movie_id) for movie_id in ids]
    member_scores = [queries[m][row] @ movies[m][rows].T for m in (0, 1)]
    np.testing.assert_allclose(served['scores'].numpy()[row], sum(member_scores), rtol=1e-4,
                               atol=1e-4)

  movie = movie_ids.index(b'1')
  member_ratings = [
      head(tf.constant(queries[m]), tf.constant(np.repeat(movies[m][[movie]], len(users), 0)),
           user_index, tf.fill([len(users)], catalogue.movie_id_indices[movie])).numpy()
      for m, (_, _, head) in enumerate(members)]
  assert not np.allclose(member_ratings[0], member_ratings[1])  # two different models
  ratings = model.signatures['predict_rating'](
      user_id=tf.constant(users), movie_id=tf.constant(['1'] * len(users)))['rating'].numpy()
  np.testing.assert_allclose(ratings, np.clip(np.mean(member_ratings, axis=0), 1.0, 5.0),
                             rtol=1e-4)


def test_sequential_trains_on_timelines_learns_and_is_pushed(sequential_run):
  exit_code, workdir, results = sequential_run
  assert exit_code == 0 and results.blessed and results.pushed
  assert len(saved_model.version_dirs(workdir / 'serving_models' / 'sequential')) == 1
  timelines = results.outputs[('TimelineGen', 'Examples')]
  train, valid, eval_examples = (ratings_of_split(timelines, split)
                                 for split in ('train', 'valid', 'eval'))
  assert all(1 <= len(context) <= 20
             for context in train.contexts + valid.contexts + eval_examples.contexts)
  # The future: about the latest 20% of the ratings (less those below min_rating), and the
  # validation split about the 10% before them.
  total = sum(len(split.movie_ids) for split in (train, valid, eval_examples))
  assert 0.1 < len(eval_examples.movie_ids) / total < 0.25
  assert 0.05 < len(valid.movie_ids) / total < 0.15
  accuracy = [results.metrics[f'top_{k}_accuracy'] for k in (10, 50, 100)]
  assert accuracy == sorted(accuracy)
  # Chance is k / movies. (Popularity is as strong as the model on this tiny synthetic set,
  # whose timelines carry little order; docs/benchmarks.md compares them on MovieLens.)
  assert accuracy[0] > 2 * 10 / SMALL['num_movies']


def test_the_evaluator_reports_each_user_segment_and_gates_on_the_whole_split(sequential_run):
  """Sequential segments: how many of the history's movies the model knows. Each eval example
  falls in one; the gate's threshold is on the whole split only."""
  from components.eval_config import metrics_by_slice
  _, _, results = sequential_run
  by_slice = metrics_by_slice(results.evaluation_uri, 'candidate')
  segments = {name: values for name, values in by_slice.items() if name}
  assert set(segments) <= {'history 0', 'history 1-4', 'history 5-19', 'history 20+'}
  assert len(segments) >= 2  # timelines of several lengths
  assert sum(values['example_count'] for values in segments.values()) == \
      by_slice['']['example_count'] == results.metrics['example_count']
  from tensorflow_model_analysis.writers import eval_config_writer
  eval_config = eval_config_writer.load_eval_run(results.evaluation_uri)[0]
  gated = [metric for spec in eval_config.metrics_specs for metric in spec.metrics
           if metric.per_slice_thresholds or metric.HasField('threshold')]
  assert gated and all(
      not metric.HasField('threshold') and all(
          list(threshold.slicing_specs) == [tfma.SlicingSpec()]
          for threshold in metric.per_slice_thresholds) for metric in gated)


def _timestamps(examples_uri, split):
  """The timestamp of each example of a split (a timeline example's: its next movie's)."""
  from pipeline.baselines import split_files
  records = tf.data.TFRecordDataset(split_files(examples_uri, split), compression_type='GZIP')
  return [tf.train.Example.FromString(record).features.feature['timestamp'].int64_list.value[0]
          for record in records.as_numpy_iterator()]


def test_the_pushed_model_is_the_blessed_one_continued_on_every_split(sequential_run):
  _, workdir, results = sequential_run
  pushed = saved_model.latest_version_dir(workdir / 'serving_models' / 'sequential')

  def fingerprint(model_dir):
    return (pathlib.Path(model_dir) / 'fingerprint.pb').read_bytes()

  refit = pathlib.Path(results.outputs[('Refit', 'Model')]) / 'Format-Serving'
  assert fingerprint(pushed) == fingerprint(refit)
  assert fingerprint(pushed) != fingerprint(pathlib.Path(results.model_uri) / 'Format-Serving')


def test_the_default_gate_judges_the_future_and_no_future_rating_is_trained_on(sequential_run):
  _, _, results = sequential_run
  ratings = results.outputs[('FileBasedExampleGen', 'Examples')]
  cut = min(_timestamps(ratings, 'eval'))
  valid_from = min(_timestamps(ratings, 'valid'))
  # The time split: train, then the validation split early stopping reads, then the future.
  assert max(_timestamps(ratings, 'train')) < valid_from <= max(_timestamps(ratings, 'valid')) < cut
  timelines = results.outputs[('TimelineGen', 'Examples')]
  assert max(_timestamps(timelines, 'train')) < valid_from
  assert valid_from <= min(_timestamps(timelines, 'valid'))
  assert max(_timestamps(timelines, 'valid')) < cut <= min(_timestamps(timelines, 'eval'))
  # Every training context is the past too: it is the movies before a past next movie.
  future_movies = {(user, movie) for user, movie in zip(
      *(lambda r: (r.user_ids, r.movie_ids))(ratings_of_split(ratings, 'eval')))}
  train = ratings_of_split(timelines, 'train')
  for user, context in zip(train.user_ids, train.contexts):
    assert not {(user, movie) for movie in context} & future_movies


def test_a_user_first_seen_after_the_cut_is_answered_from_their_history(sequential_run):
  """The eval examples of a user absent from training: their history is the future's own
  earlier ratings. The pushed model answers it from that history, not with the fallback."""
  _, workdir, results = sequential_run
  timelines = results.outputs[('TimelineGen', 'Examples')]
  known = set(ratings_of_split(timelines, 'train').user_ids)
  eval_examples = ratings_of_split(timelines, 'eval')
  new = [(user, context) for user, context in zip(eval_examples.user_ids, eval_examples.contexts)
         if user not in known]
  assert new, 'the synthetic data should have users who first rate after the cut'
  serve = _pushed_model(workdir, 'sequential').signatures['serving_default']
  histories = [[movie.decode() for movie in context] for _, context in new[:5]]
  answer = _answer(serve, histories + [['']])
  assert answer['strategy'].tolist() == [b'history'] * len(histories) + [b'popular']
  for movies in answer['movie_ids'][:-1]:
    assert len(set(movies)) == TOP_K and b'' not in set(movies)
  assert any(movies.tolist() != answer['movie_ids'][-1].tolist()
             for movies in answer['movie_ids'][:-1])


def _answer(signature, contexts, **extra):
  """The outputs for the histories, through the same request the CLIs send, as numpy."""
  padded = make_request(['context_movie_ids'], histories=contexts).inputs['context_movie_ids']
  outputs = signature(context_movie_ids=tf.constant(padded), **extra)
  return {name: value.numpy() for name, value in outputs.items()}


def _recommend(signature, contexts, **extra):
  """Movie ids for each history."""
  return _answer(signature, contexts, **extra)['movie_ids']


def test_sequential_serves_any_history_length_keeping_the_most_recent(sequential_run):
  _, workdir, _ = sequential_run
  serve = _pushed_model(workdir, 'sequential').signatures['serving_default']
  long_history = [str(movie) for movie in range(1, 41)]
  one, short, long, recent = _recommend(serve, [['5'], ['5', '9'], long_history,
                                                long_history[-20:]])
  assert len(set(one)) == TOP_K and b'' not in set(one)
  assert long.tolist() == recent.tolist()  # only the last 20 are read (tuned)
  assert one.tolist() != short.tolist()
  # Unknown ids are skipped: the same answer as without them.
  with_unknown, = _recommend(serve, [['no-such-movie', '5', 'nor-this']])
  assert with_unknown.tolist() == one.tolist()


@pytest.mark.parametrize('unknown', [[''], ['no-such-movie'], ['no-such-movie', 'nor-this']],
                         ids=['empty', 'one unknown', 'all unknown'])
def test_a_history_without_known_movies_gets_the_popular_and_a_real_one_its_own(
    sequential_run, unknown):
  _, workdir, _ = sequential_run
  serve = _pushed_model(workdir, 'sequential').signatures['serving_default']
  alone = _answer(serve, [['5', '9']])
  mixed = _answer(serve, [unknown, ['5', '9'], ['']])
  assert mixed['strategy'].tolist() == [b'popular', b'history', b'popular']
  assert mixed['movie_ids'][0].tolist() == mixed['movie_ids'][2].tolist()
  assert len(set(mixed['movie_ids'][0])) == TOP_K
  assert mixed['scores'][0].tolist() == sorted(mixed['scores'][0], reverse=True)
  assert mixed['movie_ids'][1].tolist() == alone['movie_ids'][0].tolist()
  np.testing.assert_array_equal(mixed['scores'][1], alone['scores'][0])


def test_sequential_exclusions_are_never_returned(sequential_run, tmp_path):
  """serving_exclude on the pushed model; --exclude-seen (the context) on a re-export."""
  from components.model.config import ModelConfig
  from components.trainer import train_and_export

  _, workdir, results = sequential_run
  model = _pushed_model(workdir, 'sequential')
  history = [['5', '9', '12'], ['40']]
  default = _recommend(model.signatures['serving_default'], history)
  excluded = _recommend(model.signatures['serving_exclude'], history,
                        exclude_movie_ids=tf.constant(default[:, :5]))
  for row in range(2):
    assert not set(excluded[row]) & set(default[row, :5])

  tft_output, dataset = _transformed_train_split(results)
  config = ModelConfig(kind='sequential', epochs=1, top_k=TOP_K, exclude_seen=True,
                       ensemble_size=2)
  train_and_export(config, tft_output, lambda seed: dataset, dataset, None,
                   str(tmp_path / 'serving'))
  serve = saved_model.load(tmp_path / 'serving')
  contexts = [[str(movie) for movie in range(start, start + 8)] for start in (1, 50, 100)]
  for context, movies in zip(contexts, _recommend(serve, contexts)):
    assert not set(movies) & {movie.encode() for movie in context}
    assert b'' not in set(movies)


def test_with_use_user_id_a_known_user_adds_their_embedding_and_a_new_one_is_no_error(
    sequential_run, tmp_path):
  """Re-trained from the default run's Transform output with --use-user-id: the signature takes
  user_id beside the history; any id is answered from the history, a known one's embedding
  moving the answer, an unknown one reading the "unknown user" row training taught."""
  from components.model.config import ModelConfig
  from components.trainer import train_and_export

  _, _, results = sequential_run
  tft_output, dataset = _transformed_train_split(results)
  config = ModelConfig.tuned(use_user_id=True, epochs=2, ensemble_size=1, top_k=TOP_K)
  train_and_export(config, tft_output, lambda seed: dataset, dataset, None,
                   str(tmp_path / 'serving'))
  serve = saved_model.load(tmp_path / 'serving')
  assert saved_model.input_names(serve) == ['context_movie_ids', 'user_id']
  known = sorted(set(ratings_of_split(results.outputs[('TimelineGen', 'Examples')],
                                      'train').user_ids))[:2]
  users = [user.decode() for user in known] + ['no-such-user', '']
  request = make_request(saved_model.input_names(serve), users, [['5', '9', '12']] * 4)
  answer = {name: value.numpy() for name, value in serve(**{
      name: tf.constant(value) for name, value in request.inputs.items()}).items()}
  assert answer['strategy'].tolist() == [b'history'] * 4
  movies = [row.tolist() for row in answer['movie_ids']]
  assert movies[2] == movies[3]  # unknown ids alike
  assert not np.allclose(answer['scores'][0], answer['scores'][2])  # the user moves the query
  assert all(len(set(row)) == TOP_K for row in movies)
  with pytest.raises(ValueError, match='one --user per --history'):
    make_request(saved_model.input_names(serve), ['1', '2'], [['5']])


def test_every_position_training_reads_the_window_ends_and_trains_each_rating_once(
    sequential_run, tmp_path):
  """--train-positions every, re-trained from the default run's Transform output: the window
  ends TimelineGen marked hold every training example's next movie once among their positions,
  training lowers the every-position loss, and the export answers histories as before."""
  from components import features as f
  from components.model.catalogue import Catalogue
  from components.model.config import ModelConfig
  from components.trainer import build_model, train_and_export, window_ends

  _, _, results = sequential_run
  tft_output, dataset = _transformed_train_split(results)
  config = ModelConfig.tuned(train_positions='every', epochs=10, ensemble_size=1, top_k=TOP_K,
                             batch_size=32, query_dropout=0.0)
  windows = list(window_ends(dataset, config.batch_size))
  assert all(np.all(batch[f.WINDOW_END].numpy() == 1) for batch in windows)
  examples = _rows(dataset)
  assert _targets(windows, config) == examples and len(windows) * config.batch_size < examples

  def loss(model):
    return float(sum(model.compute_loss(batch, training=True) for batch in windows))

  catalogue = Catalogue.from_dataset(dataset)
  with pytest.raises(ValueError, match='whole catalogue.*--negatives in-batch'):
    build_model(ModelConfig.tuned(train_positions='every', negatives='in-batch'), tft_output,
                catalogue)
  tf.keras.utils.set_random_seed(config.seed)
  untrained = loss(build_model(config, tft_output, catalogue))
  trained = train_and_export(config, tft_output,
                             lambda seed: window_ends(dataset, 32, seed), dataset, None,
                             str(tmp_path / 'serving'))
  assert loss(trained) < 0.95 * untrained  # 0.89 when written
  serve = saved_model.load(tmp_path / 'serving')
  answer = serve(context_movie_ids=tf.constant([['5', '9', '12']]))
  assert answer['strategy'].numpy().tolist() == [b'history']
  assert len(set(answer['movie_ids'].numpy()[0].tolist())) == TOP_K


def _rows(batches) -> int:
  return sum(int(tf.shape(batch['movie_id_index'])[0]) for batch in batches)


def _targets(windows, config) -> int:
  """The next movies every-position training asks of these windows: one a context movie."""
  return sum(int(tf.reduce_sum(tf.minimum(
      tf.RaggedTensor.from_sparse(batch['context_movie_id_indices']).row_lengths(),
      config.max_context_length))) for batch in windows)


def test_the_refit_trains_every_position_on_the_windows_of_every_split(sequential_run,
                                                                       tmp_path):
  """The refit trains on train + valid + eval: with --train-positions every it reads the
  windows of the whole timeline (window_end_all), which hold every example of the three splits
  once as a next movie, where the training split's windows leave the others out; the
  Trainer's run_fn, told its splits as the pipeline tells the refit, trains on them and
  exports a model."""
  from benchmarks import distributed_trainer
  from components import features as f
  from components.model.config import ModelConfig
  from components.trainer import run_fn, window_ends

  _, _, results = sequential_run
  _, both = _transformed_train_split(results, splits=('train', 'valid', 'eval'))
  _, train = _transformed_train_split(results)
  config = ModelConfig.tuned(train_positions='every', epochs=1, ensemble_size=1, top_k=TOP_K,
                             batch_size=32)
  assert _rows(train) < _rows(both)
  assert _targets(window_ends(both, 32, mark=f.WINDOW_END_ALL), config) == _rows(both)
  assert _targets(window_ends(both, 32), config) == _rows(train)

  def trainer_args(*train_splits):
    return distributed_trainer.fn_args(
        results.outputs[('Transform', 'TransformGraph')],
        results.outputs[('Transform', 'Examples')], str(tmp_path), config.to_dict(),
        train_splits=train_splits)

  with pytest.raises(ValueError, match=r"marks for the splits.*not for \('eval',\)"):
    run_fn(trainer_args('eval'))  # no windows are marked for it
  run_fn(trainer_args('train', 'valid', 'eval'))
  serve = saved_model.load(tmp_path / 'model' / 'Format-Serving')
  answer = serve(context_movie_ids=tf.constant([['5', '9', '12']]))
  assert answer['strategy'].numpy().tolist() == [b'history']
  assert len(set(answer['movie_ids'].numpy()[0].tolist())) == TOP_K


def _fit(model_dir):
  """What the Trainer's fit did, per ensemble member (components/trainer.py FIT_FILE)."""
  import json
  from components.trainer import FIT_FILE
  return json.loads((pathlib.Path(model_dir) / FIT_FILE).read_text())


def test_training_stops_early_and_keeps_the_weights_of_its_best_epoch(sequential_run, tmp_path):
  """With a validation split, epochs is a maximum: training stops once the validation top-10
  has not risen for early_stopping_patience epochs, and the model it returns (and exports)
  holds the best epoch's weights: its validation top-10 is the best one recorded."""
  from components.model.catalogue import Catalogue
  from components.model.config import ModelConfig
  from components.model.epoch_metrics import CatalogueTopK
  from components.trainer import _movie_table_size, train_and_export, window_ends

  _, _, results = sequential_run
  tft_output, train = _transformed_train_split(results)
  _, valid = _transformed_train_split(results, splits=('valid',))
  # A learning rate that overfits the tiny synthetic set within a few epochs.
  config = ModelConfig.tuned(epochs=40, early_stopping_patience=2, ensemble_size=1,
                             top_k=TOP_K, batch_size=32, learning_rate=1.0, embedding_l2=0.0,
                             query_dropout=0.0)
  model = train_and_export(config, tft_output, lambda seed: window_ends(train, 32, seed),
                           train, valid, str(tmp_path / 'model' / 'serving'))
  [fit] = _fit(tmp_path / 'model')
  assert fit['epochs'] < config.epochs  # stopped
  assert fit['best_epoch'] == fit['epochs'] - config.early_stopping_patience
  catalogue = Catalogue.from_dataset(train)
  measure = CatalogueTopK(valid, catalogue.candidate_features(),
                          catalogue.positions(_movie_table_size(tft_output)))
  measure.set_model(model)
  logs = {}
  measure.on_epoch_end(0, logs)
  assert logs['val_top_10_accuracy'] == pytest.approx(fit['val_top_10_accuracy'], abs=1e-4)


def test_a_refit_from_scratch_trains_as_many_epochs_as_the_gated_model_kept(tmp_path):
  import json
  from components.model.config import FIT_FILE
  from components.trainer import kept_epochs
  assert kept_epochs(str(tmp_path), default=100) == 100  # no fit.json: the maximum
  (tmp_path / FIT_FILE).write_text(json.dumps([
      {'epochs': 18, 'best_epoch': 15}, {'epochs': 20, 'best_epoch': 17}, {'epochs': 9}]))
  assert kept_epochs(str(tmp_path), default=100) == 17


def test_the_refit_continues_the_gated_model_from_its_weights(sequential_run, tmp_path):
  """The Refit starts from the gated model (its base model) and trains refit_epochs over every
  split; its first loss is the gated model's on the same batch."""
  import json
  from components import features as f
  from components.model import warm_start
  from components.model.catalogue import Catalogue
  from components.model.config import ModelConfig
  from components.trainer import build_model, train_and_export, window_ends

  _, _, results = sequential_run
  gated = pathlib.Path(results.model_uri)
  refit = pathlib.Path(results.outputs[('Refit', 'Model')])
  summary = json.loads((refit / warm_start.STATE_DIR / warm_start.SUMMARY_FILE).read_text())
  assert [member['from'] for member in summary] == [str(gated)] and not summary[0]['fresh']
  [fit] = _fit(refit)
  assert fit['epochs'] == ModelConfig.tuned().refit_epochs and 'best_epoch' not in fit

  tft_output, train = _transformed_train_split(results, splits=('train', 'valid', 'eval'))
  config = ModelConfig.tuned(ensemble_size=1, top_k=TOP_K, query_dropout=0.0, refit_epochs=1)
  batch = next(iter(window_ends(train, 64, mark=f.WINDOW_END_ALL)))
  catalogue = Catalogue.from_dataset(train)
  vocabularies = {name: tft_output.vocabulary_by_name(name) for name in f.VOCABULARIES}
  gated_model = build_model(config, tft_output, catalogue)
  gated_model.compute_loss(batch)  # builds the weights
  assert not warm_start.restore(gated_model, 0, str(gated), vocabularies)['fresh']
  train_and_export(config, tft_output, lambda seed: tf.data.Dataset.from_tensors(batch), train,
                   None, str(tmp_path / 'model' / 'serving'), base_model_dir=str(gated),
                   refit=True)
  [fit] = _fit(tmp_path / 'model')
  assert fit['epochs'] == 1
  # Equal to float32 rounding (the sums run in another order in Keras' graph); a model that
  # started afresh would be far off.
  gated_loss = float(gated_model.compute_loss(batch, training=True))
  assert fit['loss'][0] == pytest.approx(gated_loss, rel=1e-3)
  fresh = build_model(config, tft_output, catalogue)
  assert float(fresh.compute_loss(batch, training=True)) != pytest.approx(gated_loss, rel=1e-2)


def test_the_profiler_trace_is_written_where_the_run_says(sequential_run,
                                                         sequential_run_output):
  _, _, results = sequential_run
  [line] = [line for line in sequential_run_output[0].splitlines()
            if line.startswith('Profiler trace (2 steps): ')]
  trace_dir = pathlib.Path(re.match(r'Profiler trace \(2 steps\): (\S+)', line).group(1))
  assert trace_dir.is_relative_to(results.outputs[('Trainer', 'ModelRun')])
  assert list(trace_dir.glob('*/*.xplane.pb'))  # TensorBoard's Profile tab reads these


def test_the_run_says_what_each_trainer_s_fit_did(sequential_run, sequential_run_output):
  from components.model.config import ModelConfig
  printed = sequential_run_output[0]
  assert re.search(r'^Trainer: +\d+ epochs?, (stopped early, kept epoch \d+|kept the last) '
                   r'\(validation top-10 0\.\d{4}\)$', printed, re.MULTILINE)
  refit_epochs = ModelConfig.tuned().refit_epochs
  assert re.search(rf'^Refit: +{refit_epochs} epochs$', printed, re.MULTILINE)


def test_the_settings_chosen_for_the_data_are_in_mlmd_the_model_card_and_the_runs_output(
    sequential_run, sequential_run_output):
  from ml_metadata.metadata_store import metadata_store
  from tfx.orchestration import metadata

  from components.model.kinds import Sequential
  _, workdir, results = sequential_run
  # The profile is the train split's: its ratings and distinct users and movies.
  train = ratings_of_split(results.outputs[('FileBasedExampleGen', 'Examples')], 'train')
  store = metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(str(workdir / 'metadata.sqlite')))
  (recorded,) = store.get_artifacts_by_uri(results.outputs[('SettingsGen', 'HyperParameters')])
  properties = recorded.custom_properties
  assert (properties['ratings'].int_value, properties['users'].int_value,
          properties['movies'].int_value) == (
              len(train.movie_ids), len(set(train.user_ids)), len(set(train.movie_ids)))
  # The small synthetic set is sparse: the GRU over 20 movies, regularised, as tuned.
  assert len(train.movie_ids) / len(set(train.movie_ids)) < Sequential.DENSE_RATINGS_PER_MOVIE
  assert properties['history_encoder'].string_value == 'gru'
  reasons = json.loads(properties['reasons'].string_value)
  assert reasons['history_encoder'].endswith(
      f'training ratings a movie, fewer than {Sequential.DENSE_RATINGS_PER_MOVIE}')
  assert results.data_settings()['max_context_length'] == 20
  card = pathlib.Path(results.model_card).read_text()
  assert re.search(r'<tr data-setting="history_encoder"><td>history_encoder</td><td>gru</td>'
                   r'<td>\d+ training ratings a movie, fewer than \d+</td></tr>', card)
  assert f'{len(train.movie_ids):,} training ratings' in card
  assert re.search(r'^Settings chosen for the data \(.*\): .*history_encoder gru',
                   sequential_run_output[0], re.MULTILINE)


# Few movies, many ratings each: past Sequential.DENSE_RATINGS_PER_MOVIE in the train split.
DENSE = dict(num_users=150, num_movies=40, num_ratings=6000, seed=5)


@pytest.fixture(scope='module')
def dense_runs(tmp_path_factory):
  """Two short runs on dense synthetic data: with no model flag (the data chooses), and with
  --history-encoder gru given. Each: (exit code, results, the Trainer's warm-start weight
  index: key -> shape)."""
  data = synthetic.generate(tmp_path_factory.mktemp('dense') / 'synthetic', **DENSE)
  workdir = tmp_path_factory.mktemp('dense_runs')
  runs = []
  for given in ((), ('--history-encoder', 'gru')):
    exit_code = run_pipeline(data, workdir, '--no-refit', '--epochs', '2', '--min-accuracy',
                             '0', *given)
    results = latest_run_results(str(workdir / 'metadata.sqlite'))
    index = pathlib.Path(results.model_uri) / 'Format-WarmStart' / 'member-0.json'
    runs.append((exit_code, results, {entry['key']: entry['shape']
                                      for entry in json.loads(index.read_text())}))
  return runs


def _longest_context(results) -> int:
  train = ratings_of_split(results.outputs[('TimelineGen', 'Examples')], 'train')
  return max(len(context) for context in train.contexts)


def test_dense_data_trains_self_attention_over_long_windows_and_a_flag_overrides_it(dense_runs):
  from components.model.kinds import Sequential
  (chosen_exit, chosen, chosen_weights), (given_exit, given, given_weights) = dense_runs
  assert chosen_exit == 0 and given_exit == 0
  # The data chose attention over 200 movies: TimelineGen cut windows longer than the tuned 20,
  # the Trainer built 200 positions, and the card says why.
  settings = chosen.data_settings()
  assert (settings['history_encoder'], settings['max_context_length']) == ('attention', 200)
  assert _longest_context(chosen) > 20
  assert chosen_weights['query_tower/encoder/position_embedding/embeddings'][0] == 200
  card = pathlib.Path(chosen.model_card).read_text()
  assert re.search(r'<tr data-setting="history_encoder"><td>history_encoder</td>'
                   rf'<td>attention</td><td>\d+ training ratings a movie, at least '
                   rf'{Sequential.DENSE_RATINGS_PER_MOVIE}</td></tr>', card)
  # --history-encoder gru given: the GRU over the tuned 20 movies, only the regularisation
  # is the data's.
  assert given.data_settings() == {'embedding_l2': 0.0, 'query_dropout': 0.0}
  assert _longest_context(given) <= 20
  assert not any('position_embedding' in key for key in given_weights)
  assert any('gru' in key for key in given_weights)


def test_recommend_cli_takes_a_history_for_sequential_models(sequential_run, capsys):
  from pipeline import cli
  _, workdir, _ = sequential_run
  common = ['recommend', '--workdir', str(workdir), '--model-name', 'sequential', '-k', '3']
  assert cli.main(common + ['--history', '5,9,12', '--history', '40']) == 0
  out = capsys.readouterr().out
  assert 'Top 3 movies for the history 5,9,12' in out and 'for the history 40' in out
  assert cli.main(common + ['--user', '1']) == 2
  assert '--history' in capsys.readouterr().err


def test_served_sequential_model_answers_histories_and_an_empty_one_with_the_popular(
    sequential_run, capsys):
  """Our TF Serving-compatible server: the client's --history over REST and gRPC, and an
  empty history answered by the fallback."""
  import requests

  from serving import client, demo
  from tests.serving_endpoints import free_port

  _, workdir, _ = sequential_run
  grpc_port, rest_port = free_port(), free_port()
  server = demo.start_server(str(workdir / 'serving_models' / 'sequential'), 'sequential',
                             grpc_port, rest_port, timeout=180)
  try:
    for transport in (f'--rest-port={rest_port}', f'--grpc-port={grpc_port}'):
      args = ['recommend', '--model', 'sequential', '--history', '5,9,12', '-k', '3', transport]
      assert client.main(args + (['--grpc'] if 'grpc' in transport else [])) == 0
      assert ('Top 3 movies for the history 5,9,12 (strategy history'
              in capsys.readouterr().out)
    answer = requests.post(f'http://127.0.0.1:{rest_port}/v1/models/sequential:predict',
                           json={'instances': [{'context_movie_ids': ['']}]}, timeout=30)
    assert answer.status_code == 200
    assert answer.json()['predictions'][0]['strategy'] == 'popular'
  finally:
    demo.stop_server(server)


class _Lookup(tf.keras.Model):
  """A tower that returns fixed embeddings by index (the loss, not the tower, is tested)."""

  def __init__(self, key, embeddings):
    super().__init__()
    self.key, self.embeddings = key, tf.constant(embeddings, tf.float32)

  def call(self, features, training=None):
    return tf.gather(self.embeddings, features[self.key])


def test_catalogue_negatives_are_a_full_softmax_over_the_catalogue():
  from components import features as f
  from components.model.recommender import CatalogueNegatives, RecommenderModel
  rng = np.random.default_rng(0)
  users, movies = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
  catalogue = np.array([1, 2, 4, 5])  # the movie indices in the catalogue, in its row order
  positions = np.full(6, -1, np.int64)
  positions[catalogue] = np.arange(4)
  model = RecommenderModel(
      _Lookup(f.USER_ID_INDEX, users), _Lookup(f.MOVIE_ID_INDEX, movies), temperature=0.5,
      catalogue_negatives=CatalogueNegatives({f.MOVIE_ID_INDEX: tf.constant(catalogue)},
                                             tf.constant(positions)))
  logits = users[[0, 1, 2, 0]] @ movies[catalogue].T / 0.5  # every catalogue movie, each row
  labels = positions[[2, 5, 2, 4]]
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = -log_softmax[np.arange(4), labels].sum()
  batch = {f.USER_ID_INDEX: tf.constant([0, 1, 2, 0]), f.MOVIE_ID_INDEX: tf.constant([2, 5, 2, 4])}
  assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
  # An eval movie outside the catalogue (index 3) cannot be ranked: its row adds nothing.
  with_outside = {f.USER_ID_INDEX: tf.constant([0, 1, 2, 0, 1]),
                  f.MOVIE_ID_INDEX: tf.constant([2, 5, 2, 4, 3])}
  assert float(model.compute_loss(with_outside)) == pytest.approx(expected, rel=1e-5)


def test_query_dropout_acts_in_training_only():
  from components import features as f
  from components.model.config import ModelConfig
  from components.model.towers import QueryTower
  tower = QueryTower(10, ModelConfig(query_dropout=0.5), name='query_tower')
  users = {f.USER_ID_INDEX: tf.range(8, dtype=tf.int64)}
  served = tower(users).numpy()
  assert np.array_equal(served, tower(users).numpy())  # serving is deterministic
  trained = [tower(users, training=True).numpy() for _ in range(2)]
  assert not np.allclose(trained[0], trained[1]) and not np.allclose(trained[0], served)


def test_ensemble_scores_a_movie_by_the_sum_of_its_members_scores():
  from components import features as f
  from components.model.ensemble import Ensemble
  from components.model.recommender import RecommenderModel
  rng = np.random.default_rng(1)
  users, movies = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 6, 4))

  class MeanOfEmbeddings(tf.keras.Model):  # a rating head that reads its member's embeddings
    def call(self, query, candidate, user_index, movie_index):
      return tf.reduce_mean(query * candidate, axis=1)

  members = [RecommenderModel(_Lookup(f.USER_ID_INDEX, users[m]),
                              _Lookup(f.MOVIE_ID_INDEX, movies[m]),
                              rating_head=MeanOfEmbeddings()) for m in (0, 1)]
  ensemble = Ensemble.of(members)
  batch = {f.USER_ID_INDEX: tf.constant([0, 1, 2, 0]), f.MOVIE_ID_INDEX: tf.constant([2, 5, 1, 4])}
  queries, candidates = ensemble.query_tower(batch), ensemble.candidate_tower(batch)
  rows, columns = [0, 1, 2, 0], [2, 5, 1, 4]
  member_scores = [users[m][rows] @ movies[m][columns].T for m in (0, 1)]
  np.testing.assert_allclose(tf.matmul(queries, candidates, transpose_b=True).numpy(),
                             member_scores[0] + member_scores[1], rtol=1e-5)
  ratings = ensemble.rating_head(queries, candidates, batch[f.USER_ID_INDEX],
                                 batch[f.MOVIE_ID_INDEX]).numpy()
  member_ratings = [np.diag(scores) / 4 for scores in member_scores]
  np.testing.assert_allclose(ratings, (member_ratings[0] + member_ratings[1]) / 2, rtol=1e-5)


# --- TF Serving's execution path -----------------------------------------------------------------

def _signature_inputs(signature_def) -> dict:
  """A small request for every input a signature declares, by name."""
  values = {'user_id': np.array([b'1', b'2', b'no-such-user'], dtype=object),
            'movie_id': np.array([b'1', b'2', b'3'], dtype=object),
            'timestamp': np.array([880000000, 880000000, 890000000], dtype=np.int64),
            'context_movie_ids': np.array([[b'1', b'2', b'3'], [b'4', b'', b''],
                                           [b'no-such-movie', b'', b'']], dtype=object),
            'exclude_movie_ids': np.array([[b'1', b'5'], [b'', b''], [b'2', b'']], dtype=object),
            'inputs': np.array([tf.train.Example(features=tf.train.Features(feature={
                name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for name, value in (('user_id', user), ('movie_id', b'1'))}))
                .SerializeToString() for user in (b'1', b'2', b'3')], dtype=object)}
  if 'movie_id' in signature_def.inputs:  # predict_rating refuses an unknown user, by design
    values['user_id'] = np.array([b'1', b'2', b'3'], dtype=object)
  return {name: values[name] for name in signature_def.inputs}


@pytest.mark.parametrize('run', ['first_run', 'multitask_run', 'sequential_run'])
def test_every_signature_runs_as_tf_serving_runs_it_in_a_tf1_session(run, request):
  """TF Serving loads a SavedModel with the C++ loader (tag serve, the init op run) and runs
  signatures by their SignatureDef tensor names with Session::Run. The same through the TF1
  loader and tf.compat.v1.Session (the ScaNN ops registered by importing scann, as a TF
  Serving build links them) answers what our server answers (Session::MakeCallable) and what
  the TF2 loader's concrete functions answer (serving.saved_model.load, the benchmarks)."""
  from serving.models import LoadedVersion
  _, workdir, _ = request.getfixturevalue(run)
  (name,) = [path.name for path in (pathlib.Path(workdir) / 'serving_models').iterdir()
             if path.is_dir()]
  version = saved_model.latest_version_dir(pathlib.Path(workdir) / 'serving_models' / name)
  ours = LoadedVersion(name, 1, str(version))
  in_session = {}  # signature -> (inputs, outputs)
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ['serve'], str(version))
    # Saved without Keras' layer traces (export.save): the signatures' graphs only.
    assert not [function.signature.name for function in meta_graph.graph_def.library.function
                if 'call_and_return_conditional_losses' in function.signature.name]
    for signature_name, signature_def in meta_graph.signature_def.items():
      if signature_name.startswith('__'):  # __saved_model_init_op: run by the loader
        continue
      inputs = _signature_inputs(signature_def)
      in_session[signature_name] = inputs, session.run(
          {alias: info.name for alias, info in signature_def.outputs.items()},
          {signature_def.inputs[alias].name: value for alias, value in inputs.items()})
  tf2_signatures = tf.saved_model.load(str(version)).signatures
  for signature_name, (inputs, fetched) in in_session.items():
    _, answered = ours.predict(signature_name, inputs)
    tf2_answered = {alias: tensor.numpy() for alias, tensor in tf2_signatures[signature_name](
        **{alias: tf.constant(value) for alias, value in inputs.items()}).items()}
    for other in (answered, tf2_answered):
      assert set(fetched) == set(other), signature_name
      for alias, value in fetched.items():
        if value.dtype.kind in 'fc':
          np.testing.assert_allclose(value, other[alias], rtol=1e-5, atol=1e-5,
                                     err_msg=f'{signature_name}/{alias}')
        else:
          np.testing.assert_array_equal(value, other[alias], err_msg=f'{signature_name}/{alias}')
  ours.close()
  compared = set(in_session)
  assert {'serving_default', 'serving_exclude'} <= compared
  # The Evaluator's signatures are in the eval model only: score_examples would let one
  # request make the server compute [rows, catalogue] scores.
  assert not compared & {'eval_examples', 'score_examples', 'transform_features'}
  assert ('predict_rating' in compared) == ('regress_rating' in compared) == (
      run == 'multitask_run')


def test_a_catalogue_past_max_catalogue_negatives_trains_on_in_batch_negatives(multitask_run):
  """The full softmax's step grows with the catalogue: past the bound, in-batch with logQ."""
  from components.model.catalogue import Catalogue
  from components.model.config import ModelConfig
  from components.trainer import build_model

  _, _, results = multitask_run
  tft_output, dataset = _transformed_train_split(results)
  catalogue = Catalogue.from_dataset(dataset)
  within = ModelConfig(kind='retrieval', negatives='catalogue',
                       max_catalogue_negatives=len(catalogue))
  model = build_model(within, tft_output, catalogue)
  assert model.catalogue_negatives is not None and model.movie_sampling_probability is None
  past = ModelConfig(kind='retrieval', negatives='catalogue',
                     max_catalogue_negatives=len(catalogue) - 1)
  model = build_model(past, tft_output, catalogue)
  assert model.catalogue_negatives is None and model.movie_sampling_probability is not None
