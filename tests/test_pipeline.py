"""The whole pipeline through LocalDagRunner on small synthetic data, via the CLI."""
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from components import features
from components.ingest import movielens, spans, synthetic
from components.model import warm_start
from pipeline import cli, replay
from pipeline.baselines import baseline_accuracy, ratings_of_split, split_files
from pipeline.results import latest_run_results
from serving import saved_model
from serving.config_files import read_models_config
from serving.recommendations import make_request
from tests.conftest import RETRIEVAL, SMALL, TOP_K, run_pipeline as _run


def test_model_is_blessed_and_pushed_in_tf_serving_layout(first_run):
  exit_code, workdir, results = first_run
  assert exit_code == 0
  assert results.blessed and results.pushed
  versions = saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')
  assert len(versions) == 1
  assert pathlib.Path(results.pushed_path).resolve() == versions[0].resolve()
  assert _labels(workdir) == {'stable': int(versions[0].name)}


def _labels(workdir):
  (source,) = read_models_config(workdir / 'serving_models' / 'models.config')
  return source.version_labels


def _scalars(folder):
  """{tag: [value per step]} from the TensorBoard event files in a folder."""
  values = {}
  for path in sorted(pathlib.Path(folder).glob('events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  return values


def test_the_trainer_writes_each_epochs_losses_and_top_k_accuracy_for_tensorboard(first_run):
  """In TFX's ModelRun artifact, a folder per ensemble member: the training loss and, on the
  valid split, the loss and the catalogue top-k accuracy, one value per epoch it ran (at most
  5: early stopping may end it sooner, a busy machine's rounding deciding when)."""
  _, _, results = first_run
  model_run = pathlib.Path(results.outputs[('Trainer', 'ModelRun')])
  assert sorted(path.name for path in model_run.iterdir()) == ['member-0', 'member-1',
                                                               'member-2']
  fit = results.fits()[0]
  epochs, kept = fit['epochs'], fit.get('best_epoch', fit['epochs'])
  assert 1 <= kept <= epochs <= 5
  train = _scalars(model_run / 'member-0' / 'train')
  validation = _scalars(model_run / 'member-0' / 'validation')
  assert len(train['epoch_loss']) == epochs
  assert len(validation['epoch_catalogue_loss']) == epochs
  top_10, top_100 = validation['epoch_top_10_accuracy'], validation['epoch_top_100_accuracy']
  assert len(top_100) == epochs
  assert all(0 <= low <= high <= 1 for low, high in zip(top_10, top_100))
  assert train['epoch_loss'][-1] < train['epoch_loss'][0]  # it learns
  # The kept epoch's figure is about the Evaluator's (the valid split's first 10,000 examples
  # by brute force against the eval split; the Evaluator scores the ensemble, this one member).
  assert top_100[kept - 1] == pytest.approx(results.metrics['top_100_accuracy'], abs=0.1)


def _rendered_card(card_dir: pathlib.Path, scratch: pathlib.Path):
  """The card's page as Chromium rendered it, parsed: (metric -> shown value, id -> element
  text, img id -> (rendered width, src), signature names, lineage rows' cells)."""
  import html.parser
  from tests import browser

  class Page(html.parser.HTMLParser):
    def __init__(self):
      super().__init__()
      self.metrics, self.texts, self.images, self.signatures, self.lineage = {}, {}, {}, [], []
      self._open, self._metric, self._cell, self._in_lineage, self._row = None, None, '', False, []

    def handle_starttag(self, tag, attrs):
      attrs = dict(attrs)
      if tag == 'img':
        self.images[attrs.get('id')] = (int(attrs.get('data-rendered-width', -1)), attrs['src'])
      if tag == 'tr' and 'data-metric' in attrs:
        self._metric = attrs['data-metric']
      if tag == 'td' and 'value' in (attrs.get('class') or '').split() and self._metric:
        self._open = ('metric', self._metric)
      elif attrs.get('id') or 'data-signature' in attrs:
        self._open = ('id', attrs.get('id') or 'signature:' + attrs['data-signature'])
      if tag == 'table' and attrs.get('id') == 'lineage':
        self._in_lineage = True
      if tag == 'td' and self._in_lineage:
        self._cell = ''
      self._tag = tag

    def handle_data(self, data):
      if self._open:
        kind, key = self._open
        (self.metrics if kind == 'metric' else self.texts)[key] = data.strip()
        if key.startswith('signature:'):
          self.signatures.append(data.strip())
        self._open = None
      if self._in_lineage:
        self._cell += data

    def handle_endtag(self, tag):
      if tag == 'td' and self._in_lineage:
        self._row.append(self._cell.strip())
      if tag == 'tr' and self._in_lineage and self._row:
        self.lineage.append(self._row)
        self._row = []
      if tag == 'table':
        self._in_lineage = False

  page = Page()
  page.feed(browser.rendered_dom(card_dir / 'model_card.html', scratch))
  return page


def test_every_push_writes_a_model_card_whose_page_shows_the_runs_figures(first_run, tmp_path):
  """Beside the pushed version, HTML and Markdown: rendered in a real browser (Chromium), the
  page shows this run's Evaluator metrics, version, gate, plots and lineage."""
  from tests import browser
  _, workdir, results = first_run
  version = pathlib.Path(results.pushed_path).name
  card_dir = workdir / 'serving_models' / 'retrieval' / 'model_cards' / version
  assert results.model_card == str(card_dir / 'model_card.html')  # the path the CLI prints
  assert pathlib.Path(results.outputs[('ModelCard', 'movielens.ModelCard')]).is_dir()
  page = _rendered_card(card_dir, tmp_path)
  shown = {name: float(value) for name, value in page.metrics.items()}
  expected = {name: value for name, value in results.metrics.items()
              if name.startswith('top_')}
  assert set(expected) <= set(shown)
  for name, value in expected.items():
    assert shown[name] == pytest.approx(value, abs=5e-5), name  # shown with 4 decimals
  assert page.texts['version'] == version
  assert page.texts['kind'] == 'retrieval' and page.texts['gate'] == 'passed'
  assert page.texts['execution-id'].isdigit()
  # The Evaluator's user segments (random split: every eval user is known), all counted.
  dom = browser.rendered_dom(card_dir / 'model_card.html', tmp_path)
  segments = dict(re.findall(r'<tr data-segment="([^"]+)"><td>[^<]*</td><td class="number">'
                             r'(\d+)</td>', dom))
  assert 'known user' in segments and set(segments) <= {'known user', 'new user'}
  assert sum(map(int, segments.values())) == results.metrics['example_count']
  for image in ('top-k-plot', 'segments-plot', 'training-plot'):  # decoded, not broken
    width, _ = page.images[image]
    assert width > 200, image
  assert {'serving_default', 'serving_exclude'} <= set(page.signatures)
  uris = {row[-1] for row in page.lineage}
  assert results.model_uri in uris and results.evaluation_uri in uris
  markdown = (card_dir / 'model_card.md').read_text()
  assert f'| top_10_accuracy | {results.metrics["top_10_accuracy"]:.4f} |' in markdown
  assert (card_dir / 'top_k_accuracy.png').stat().st_size > 1000
  assert browser.screenshot(card_dir / 'model_card.html', tmp_path / 'card.png').stat().st_size \
      > 20_000  # a page was drawn, not a blank one
  # TF Serving and our server take only numbered folders as versions: model_cards/ is not one.
  assert 'model_cards' not in {path.name for path in
                                saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')}


def test_evaluator_reports_top_k_accuracy_above_chance_and_popularity(first_run):
  _, _, results = first_run
  accuracy = [results.metrics[f'top_{k}_accuracy'] for k in (10, 50, 100)]
  assert accuracy == sorted(accuracy)
  # A random ranking gets k / num_movies; the model must have learned the latent tastes.
  assert accuracy[0] > 2 * 10 / SMALL['num_movies']
  examples = results.outputs[('FileBasedExampleGen', 'Examples')]
  popular = baseline_accuracy(ratings_of_split(examples, 'train'),
                              ratings_of_split(examples, 'eval'))['most-popular']
  assert results.metrics['top_50_accuracy'] > popular['top_50_accuracy']


def test_evaluator_top_k_accuracy_is_the_share_of_eval_movies_in_the_top_k_of_every_score(
    first_run):
  """The Evaluator gets one rank an example (label_rank), not the catalogue's scores: its
  figures must be those of ranking every movie index's score (in_top_k) for each eval rating."""
  _, _, results = first_run
  model = tf.saved_model.load(str(pathlib.Path(results.model_uri) / 'Format-TFMA'))
  examples = tf.constant(list(tf.data.TFRecordDataset(
      split_files(results.outputs[('FileBasedExampleGen', 'Examples')], 'eval'),
      compression_type='GZIP').as_numpy_iterator()))
  scores = model.signatures[features.SCORE_SIGNATURE](examples=examples)[features.SCORE_OUTPUT]
  labels = model.signatures[features.TRANSFORM_SIGNATURE](examples=examples)[
      features.MOVIE_ID_INDEX]
  assert scores.shape[0] == len(examples)
  for k in (10, 50, 100):
    in_top_k = tf.math.in_top_k(tf.cast(labels, tf.int32), scores, k).numpy()
    # TFMA's batches round the matrix products differently: one tie may flip.
    assert results.metrics[f'top_{k}_accuracy'] == pytest.approx(in_top_k.mean(),
                                                                  abs=1.01 / len(examples))
  assert results.metrics['example_count'] == len(examples)


def test_pushed_model_loads_in_a_fresh_process(first_run, small_dataset):
  _, workdir, _ = first_run
  version = saved_model.latest_version_dir(workdir / 'serving_models' / 'retrieval')
  script = ('import json, sys\n'
            'from serving import saved_model\n'
            'from serving.recommendations import make_request\n'
            'fn = saved_model.load(sys.argv[1])\n'
            'request = make_request(saved_model.input_names(fn), ["1", "2"])\n'
            'print(json.dumps([answer.to_json() for answer in '
            'saved_model.recommend(fn, request, k=10)]))\n')
  output = subprocess.run([sys.executable, '-c', script, str(version)], check=True,
                          capture_output=True, text=True).stdout
  recommendations = json.loads(output.strip().splitlines()[-1])
  movies = movielens.read_movies(small_dataset)
  assert [answer['strategy'] for answer in recommendations] == ['user', 'user']
  recommendations = [answer['movies'] for answer in recommendations]
  for user_movies in recommendations:
    titles = [movie['title'] for movie in user_movies]
    assert len(set(titles)) == 10
    assert all(movies[movie['movie_id']].title == movie['title'] for movie in user_movies)
    scores = [movie['score'] for movie in user_movies]
    assert scores == sorted(scores, reverse=True)
  assert recommendations[0] != recommendations[1]


def test_scann_index_agrees_with_brute_force(first_run):
  """The pushed ScaNN model against the plain-TF evaluation model of the same training."""
  _, workdir, results = first_run
  users = make_request(['user_id'], [str(user) for user in range(1, SMALL['num_users'] + 1)])
  scann_top = saved_model.recommend(
      saved_model.load(pathlib.Path(results.model_uri) / 'Format-Serving'), users)
  exact_top = saved_model.recommend(
      saved_model.load(pathlib.Path(results.model_uri) / 'Format-TFMA'), users)
  overlap = [len({m['movie_id'] for m in a.movies} & {m['movie_id'] for m in b.movies}) / TOP_K
             for a, b in zip(scann_top, exact_top)]
  assert sum(overlap) / len(overlap) >= 0.95


def test_unreachable_floor_is_not_blessed_and_pushes_nothing(first_run, small_dataset, capsys):
  _, workdir, first = first_run
  versions_before = saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')
  labels_before = _labels(workdir)
  exit_code = _run(small_dataset, workdir, *RETRIEVAL, '--min-accuracy', '1.01')
  results = latest_run_results(str(workdir / 'metadata.sqlite'))
  assert exit_code == cli.EXIT_NOT_BLESSED
  assert results.blessed is False and not results.pushed
  assert any('top_100_accuracy' in failure for failure in results.failed_thresholds)
  assert saved_model.version_dirs(workdir / 'serving_models' / 'retrieval') == versions_before
  assert _labels(workdir) == labels_before  # a failed run leaves the rollout as it was
  assert 'NOT blessed' in capsys.readouterr().out
  # The Pusher runs only on a blessing (a Cond): no execution, no push.
  assert ('Pusher', 'PushedModel') not in results.outputs
  # Only the gate changed: the trained model came from the cache.
  assert results.model_uri == first.model_uri


def test_retrained_model_is_compared_with_the_blessed_baseline(first_run, small_dataset):
  """A new model (fewer epochs, so worse) against the blessed one: the change threshold."""
  _, workdir, first = first_run
  versions_before = saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')
  cli.main(['run', '--data-dir', str(small_dataset), '--workdir', str(workdir), *RETRIEVAL,
            '--epochs', '1', '--learning-rate', '0.001', '--top-k', str(TOP_K),
            '--min-accuracy', '0.0', '--ensemble-size', '1'])
  results = latest_run_results(str(workdir / 'metadata.sqlite'))
  assert results.model_uri != first.model_uri
  # The baseline is the first (blessed) model, evaluated again on the same eval split.
  assert results.baseline_metrics['top_100_accuracy'] == pytest.approx(
      first.metrics['top_100_accuracy'], abs=1e-6)
  assert 0 < results.metrics['top_100_accuracy'] < first.metrics['top_100_accuracy']
  assert results.blessed is False and not results.pushed
  assert saved_model.version_dirs(workdir / 'serving_models' / 'retrieval') == versions_before


def test_unchanged_rerun_pushes_no_new_version(first_run, small_dataset, capsys):
  """The cached model, blessed again, is the latest version already: no byte-identical copy
  for every server to hot-swap to."""
  _, workdir, first = first_run
  versions_before = saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')
  exit_code = _run(small_dataset, workdir, *RETRIEVAL, '--min-accuracy', '0.3')
  results = latest_run_results(str(workdir / 'metadata.sqlite'))
  assert exit_code == 0
  assert results.model_uri == first.model_uri
  assert results.blessed and results.pushed
  assert saved_model.version_dirs(workdir / 'serving_models' / 'retrieval') == versions_before
  assert pathlib.Path(results.pushed_path).resolve() == versions_before[-1].resolve()
  assert f'Already serving this model: {versions_before[-1]}' in capsys.readouterr().out
  assert _labels(workdir) == {'stable': int(versions_before[-1].name)}


# The default split (time) and refit: what span runs use.
FOUR_MOVIES = ('--model', 'retrieval', '--epochs', '1', '--ensemble-size', '1',
               '--min-accuracy', '0')


def _arriving_dataset(folder):
  """A ratings file where 40 users rate a catalogue of four movies and, a year later, 20 new
  users and two new movies join (60 users rate six movies); (folder, the day between)."""
  first = synthetic.generate(folder / 'first', num_users=40, num_movies=4, num_ratings=160,
                             seed=1)
  later = synthetic.generate(folder / 'source', num_users=60, num_movies=6, num_ratings=320,
                             seed=2)  # its movies and users files hold all of them
  year = 365 * 24 * 3600
  rows = [line.split('\t') for line in (later / 'u.data').read_text().splitlines()]
  (later / 'u.data').write_text((first / 'u.data').read_text() + ''.join(
      f'{user}\t{movie}\t{rating}\t{int(timestamp) + year}\n'
      for user, movie, rating, timestamp in rows))
  last_of_first = max(int(line.split('\t')[3])
                      for line in (first / 'u.data').read_text().splitlines())
  return later, replay.date_of(last_of_first + 24 * 3600)


@pytest.fixture(scope='module')
def four_movie_runs(tmp_path_factory):
  """`pipeline replay` of that dataset, a span per run into one workdir: span 1 has the
  catalogue of four movies (smaller than ScaNN's quantizer needs); span 2 adds two movies and
  20 users, and its run trains on both spans, warm-started from the first model (with a
  learning rate of 0, so the second model's weights are the first's, by id): a second model is
  pushed. (workdir, the results of each run). The drift tests below run there after the
  others."""
  tmp_path = tmp_path_factory.mktemp('four_movies')
  source, second_span_from = _arriving_dataset(tmp_path)
  args = cli.build_parser().parse_args([
      'replay', '--data-dir', str(source), '--workdir', str(tmp_path / 'workdir'),
      '--from', second_span_from, '--span-days', '3650', *FOUR_MOVIES, '--warm-start',
      '--warm-start-epochs', '1', '--learning-rate', '0', '--seed', '7', '--drift-action',
      'warn'])
  results = []

  def run_and_keep_results(span_args):
    exit_code = cli._run_locked(span_args)  # pylint: disable=protected-access
    results.append(latest_run_results(str(tmp_path / 'workdir' / 'metadata.sqlite')))
    return exit_code

  assert replay.replay(args, run_span=run_and_keep_results) == 0
  return tmp_path / 'workdir', results


def test_replay_runs_the_pipeline_once_per_span_and_records_each_run(four_movie_runs):
  workdir, (first, second) = four_movie_runs
  runs = json.loads((workdir / 'replay' / 'runs.json').read_text())['runs']
  assert [(run['span'], run['ratings'], run['exit_code'], run['blessed']) for run in runs] == [
      (1, 160, 0, True), (2, 320, 0, True)]
  assert [run['pushed_version'] for run in runs] == [
      pathlib.Path(first.pushed_path).name, pathlib.Path(second.pushed_path).name]
  assert runs[1]['baseline_metrics'] == second.baseline_metrics != {}
  assert spans.span_numbers(workdir / 'replay' / 'data') == [1, 2]


def _examples_per_split(examples_uri):
  """{split: number of examples} of an Examples artifact."""
  return {folder.name[len('Split-'):]: sum(1 for path in folder.iterdir()
                                            for _ in tf.data.TFRecordDataset(
                                                str(path), compression_type='GZIP'))
          for folder in pathlib.Path(examples_uri).glob('Split-*')}


def test_a_span_run_trains_on_every_span_and_is_gated_on_the_newest_spans_eval(
    four_movie_runs):
  """Span 2's run ingested span 2 alone (span 1's Examples came from the first run), and its
  window holds both: eval is span 2's eval split (its last ratings in time), valid span 2's
  valid split (the days before them), train the rest."""
  workdir, (first, second) = four_movie_runs
  span_1 = _examples_per_split(first.outputs[('FileBasedExampleGen', 'Examples')])
  span_2 = _examples_per_split(second.outputs[('FileBasedExampleGen', 'Examples')])
  assert sum(span_1.values()) == 160 and sum(span_2.values()) == 320
  window = second.outputs[('SpanWindow', 'Examples')]
  assert _examples_per_split(window) == {
      'train': sum(span_1.values()) + span_2['train'], 'valid': span_2['valid'],
      'eval': span_2['eval']}
  assert all(path.name.startswith('span-2-eval-')
             for path in (pathlib.Path(window) / 'Split-eval').iterdir())
  # The gate compared the new model with the live one: the first run's refit model, which the
  # first run blessed once pushed (the gated model's blessing names the gated model).
  store = metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(str(workdir / 'metadata.sqlite')))
  refit_blessing = store.get_artifacts_by_uri(first.outputs[('RefitBlessing', 'ModelBlessing')])
  (live,) = store.get_artifacts_by_uri(first.outputs[('Refit', 'Model')])
  assert refit_blessing[0].custom_properties['current_model_id'].int_value == live.id
  assert refit_blessing[0].custom_properties['blessed'].int_value == 1
  assert second.baseline_metrics  # the first run's refit model, on span 2's eval split
  # The model's examples (retrieval: the Transform's) are the window's.
  assert _examples_per_split(second.outputs[('Transform', 'Examples')]) == \
      _examples_per_split(window)


def test_a_catalogue_of_four_movies_is_pushed_and_served(four_movie_runs):
  """The serving index is brute force, top-k is capped."""
  workdir, _ = four_movie_runs
  version = saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')[0]
  answers = saved_model.recommend(saved_model.load(version), make_request(['user_id'], ['1']))
  assert sorted(movie['movie_id'] for movie in answers[0].movies) == ['1', '2', '3', '4']


def test_the_first_push_is_labelled_stable_and_the_next_canary(four_movie_runs):
  """serving_models/models.config: what a TF Serving started with --model_config_file serves."""
  workdir, (first, second) = four_movie_runs
  versions = [int(path.name) for path in
              saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')]
  assert len(versions) == 2 and first.pushed and second.pushed
  (source,) = read_models_config(workdir / 'serving_models' / 'models.config')
  assert source.version_labels == {'stable': versions[0], 'canary': versions[1]}
  assert (source.version_policy, list(source.versions)) == ('specific', versions)
  assert pathlib.Path(source.base_path) == workdir / 'serving_models' / 'retrieval'
  assert first.rollout == f'version {versions[0]} is stable (the first one)'
  assert second.rollout == f'version {versions[1]} is the canary beside stable version ' \
      f'{versions[0]}'


def _warm_start_state(model_uri, vocabulary):
  """A Trainer's saved weights of the id table over `vocabulary`, and its ids."""
  state = pathlib.Path(model_uri) / warm_start.STATE_DIR
  entries = json.loads((state / 'member-0.json').read_text())
  (position,) = [i for i, entry in enumerate(entries) if entry['vocabulary'] == vocabulary]
  ids = (state / 'vocabularies' / vocabulary).read_bytes().split(b'\n')
  return np.load(state / 'member-0.npz')[f'w{position}'], ids


def test_a_warm_run_starts_from_the_blessed_model_by_id_and_serves_the_new_ids(
    four_movie_runs):
  """Each user and movie the first model knew has its row in the second (at a learning rate
  of 0, unchanged), whatever its new place in the vocabulary; new ones have new rows."""
  workdir, (first, warm) = four_movie_runs
  state = pathlib.Path(warm.model_uri) / warm_start.STATE_DIR
  (summary,) = json.loads((state / warm_start.SUMMARY_FILE).read_text())
  # With span folders the base is the live model: the first run's refit one, which it pushed.
  live = first.outputs[('Refit', 'Model')]
  assert pathlib.Path(summary['from']) == pathlib.Path(live)
  assert summary['new_ids'][features.MOVIE_ID_VOCAB] == 2
  for vocabulary in (features.USER_ID_VOCAB, features.MOVIE_ID_VOCAB):
    base_table, base_ids = _warm_start_state(live, vocabulary)
    warm_table, warm_ids = _warm_start_state(warm.model_uri, vocabulary)
    assert summary['carried_ids'][vocabulary] == len(set(base_ids) & set(warm_ids)) > 0
    for known in set(base_ids) & set(warm_ids):
      np.testing.assert_allclose(warm_table[warm_ids.index(known)],
                                 base_table[base_ids.index(known)])
  served = saved_model.version_dirs(workdir / 'serving_models' / 'retrieval')[-1]
  answers = saved_model.recommend(saved_model.load(served), make_request(['user_id'], ['55']))
  assert sorted(movie['movie_id'] for movie in answers[0].movies) == ['1', '2', '3', '4', '5',
                                                                      '6']


def _with_every_rating(data_dir, tmp_path, rating: int):
  """A copy of a data folder where every rating is `rating` stars."""
  copy = tmp_path / f'rated_{rating}'
  shutil.copytree(data_dir, copy)
  lines = [line.split('\t') for line in (copy / 'u.data').read_text().splitlines()]
  (copy / 'u.data').write_text(''.join(f'{user}\t{movie}\t{rating}\t{time}\n'
                                       for user, movie, _, time in lines))
  return copy


def _drifted_features(anomalies_uri):
  """{split pair: features} DistributionValidator found drifted, from its anomalies files."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2
  drifted = {}
  for path in sorted(pathlib.Path(anomalies_uri).glob('SplitPair-*/SchemaDiff.pb')):
    anomalies = anomalies_pb2.Anomalies.FromString(path.read_bytes())
    drifted[path.parent.name[len('SplitPair-'):]] = sorted(anomalies.anomaly_info)
  return drifted


def test_drift_past_a_threshold_warns_and_the_run_goes_on_with_drift_action_warn(
    four_movie_runs):
  """The second run's data has six movies where the first's had four: every movie's share
  moved, past --max-id-drift; with --drift-action warn it trained and pushed all the same."""
  _, (_, second) = four_movie_runs
  drifted = _drifted_features(second.outputs[('DistributionValidator', 'ExampleAnomalies')])
  assert 'movie_id' in drifted['train_train']
  assert second.pushed


def test_drifted_ratings_stop_the_run_naming_the_feature_and_distance(four_movie_runs,
                                                                      tmp_path, capsys):
  """Every rating 1 star against the previous run's 1-5: stopped before training, and the
  rollout's labels stay as they were."""
  workdir, _ = four_movie_runs
  labels_before = _labels(workdir)
  trainers = set((workdir / 'pipeline_root' / 'Trainer' / 'model').iterdir())
  data_dir = workdir / 'replay' / 'data'
  shutil.copytree(_with_every_rating(spans.span_folder(data_dir, 2), tmp_path, 1),
                  spans.span_folder(data_dir, 3))
  assert _run(data_dir, workdir, *FOUR_MOVIES) == 1
  error = capsys.readouterr().err
  assert "drifted from the previous run's" in error
  assert "train_train: feature 'user_rating'" in error and 'Jensen-Shannon' in error
  assert 'above the threshold 0.1' in error and '--drift-action warn' in error
  assert set((workdir / 'pipeline_root' / 'Trainer' / 'model').iterdir()) == trainers
  assert _labels(workdir) == labels_before


def _copy_with_line(dataset, tmp_path, line_no, new_line):
  data_dir = tmp_path / 'data'
  shutil.copytree(dataset, data_dir)
  lines = (data_dir / 'u.data').read_text().splitlines(keepends=True)
  lines[line_no - 1] = new_line
  (data_dir / 'u.data').write_text(''.join(lines))
  return data_dir


def test_anomalies_stop_the_run_before_training(small_dataset, tmp_path, capsys):
  user, movie, _, timestamp = (small_dataset / 'u.data').read_text().splitlines()[4].split('\t')
  data_dir = _copy_with_line(small_dataset, tmp_path, 5, f'{user}\t{movie}\t7\t{timestamp}\n')
  assert _run(data_dir, tmp_path / 'workdir') == 1
  error = capsys.readouterr().err
  assert "feature 'user_rating'" in error
  assert not (tmp_path / 'workdir' / 'pipeline_root' / 'Trainer').exists()


def test_malformed_line_stops_the_run_naming_file_and_line(small_dataset, tmp_path, capsys):
  data_dir = _copy_with_line(small_dataset, tmp_path, 7, '1\t2\tgood\t881250949\n')
  assert _run(data_dir, tmp_path / 'workdir') == 1
  error = capsys.readouterr().err
  assert 'u.data:7' in error and 'rating' in error
  assert not (tmp_path / 'workdir' / 'serving_models').exists()


def test_model_with_timestamp_features_serves_with_a_timestamp(first_run, tmp_path):
  """The query tower with timestamp buckets and z-score, trained on the run's Transform output."""
  import tensorflow_transform as tft
  from tfx_bsl.public import tfxio

  from components.model.config import ModelConfig
  from components.trainer import train_and_export

  _, _, results = first_run
  tft_output = tft.TFTransformOutput(results.outputs[('Transform', 'TransformGraph')])
  examples = results.outputs[('Transform', 'Examples')]

  def dataset(split):
    return tfxio.TFExampleRecord(
        f'{examples}/Split-{split}/*', schema=tft_output.transformed_metadata.schema,
    ).TensorFlowDataset(tfxio.TensorFlowDatasetOptions(batch_size=512, num_epochs=1))

  config = ModelConfig(kind='retrieval', use_timestamps=True, epochs=1, top_k=5)
  serving_dir, eval_dir = tmp_path / 'serving', tmp_path / 'eval'
  train_and_export(config, tft_output, lambda seed: dataset('train'), dataset('train'), None,
                   str(serving_dir), str(eval_dir))
  serving_fn = saved_model.load(serving_dir)
  names = saved_model.input_names(serving_fn)
  assert names == ['timestamp', 'user_id']
  # Without timestamps the request asks for now.
  now = make_request(names, ['1'])
  assert abs(int(now.inputs['timestamp'][0]) - time.time()) < 60
  assert len(saved_model.recommend(serving_fn, now)[0].movies) == 5
  early, late = (answer.movies for answer in saved_model.recommend(
      serving_fn, make_request(names, ['1', '1'], timestamps=[880_000_000, 900_000_000])))
  assert len(early) == 5 and len({movie['movie_id'] for movie in early}) == 5
  assert [m['score'] for m in early] != [m['score'] for m in late]  # time changes the query


def test_evaluator_loads_the_plain_tf_model_in_a_process_without_scann(first_run):
  """Beam workers of the Evaluator have no ScaNN ops: they must get Format-TFMA."""
  _, _, results = first_run
  script = (
      'import sys\n'
      'from components import eval_config\n'
      'config = eval_config.make_eval_config((10, 50, 100), 100, 0.0)\n'
      'shared = eval_config.custom_eval_shared_model(sys.argv[1], "", config)\n'
      'assert "scann" not in sys.modules, "scann was imported"\n'
      'shared.model_loader.load()\n'
      'print(shared.model_path)\n')
  completed = subprocess.run(
      [sys.executable, '-c', script, f'{results.model_uri}/Format-Serving'],
      capture_output=True, text=True)
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert completed.stdout.strip().splitlines()[-1] == f'{results.model_uri}/Format-TFMA'


def test_serving_exclude_never_returns_excluded_movies(first_run):
  _, _, results = first_run
  users = tf.constant(['1', '2', '3', '4', '5'])
  for model_format in ('Format-TFMA', 'Format-Serving'):  # exact top k, then ScaNN
    model = tf.saved_model.load(str(pathlib.Path(results.model_uri) / model_format))
    default = model.signatures['serving_default'](user_id=users)['movie_ids'].numpy()
    exclude = np.concatenate([default[:, :5], np.full([5, 2], b''), np.full([5, 1], b'no-such')],
                             axis=1)
    answer = model.signatures['serving_exclude'](user_id=users, exclude_movie_ids=exclude)
    for row in range(5):
      assert not set(answer['movie_ids'].numpy()[row]) & set(default[row, :5])
      if model_format == 'Format-TFMA':
        assert answer['movie_ids'].numpy()[row, :TOP_K - 5].tolist() == default[row, 5:].tolist()
    with pytest.raises(tf.errors.InvalidArgumentError, match='at most 100 per query'):
      model.signatures['serving_exclude'](user_id=users[:1],
                                          exclude_movie_ids=tf.fill([1, 101], 'x'))


def _recent_counts(examples_uri, days=30, splits=('train',)):
  """{movie id: ratings in the last `days` days of the splits}, from the examples."""
  spec = {'movie_id': tf.io.FixedLenFeature([], tf.string),
          'timestamp': tf.io.FixedLenFeature([], tf.int64)}
  movies, times = [], []
  files = [name for split in splits for name in split_files(examples_uri, split)]
  for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4096):
    parsed = tf.io.parse_example(batch, spec)
    movies.extend(parsed['movie_id'].numpy().tolist())
    times.extend(parsed['timestamp'].numpy().tolist())
  start = max(times) - days * 24 * 60 * 60
  counts = {}
  for movie, when in zip(movies, times):
    counts[movie] = counts.get(movie, 0) + (when >= start)
  return counts


@pytest.fixture(scope='module')
def pushed_model(first_run):
  _, workdir, _ = first_run
  return tf.saved_model.load(
      str(saved_model.latest_version_dir(workdir / 'serving_models' / 'retrieval')))


def test_unknown_user_ids_get_the_most_rated_movies_of_the_last_30_days_of_training(
    first_run, pushed_model):
  _, _, results = first_run
  answer = pushed_model.signatures['serving_default'](
      user_id=tf.constant(['1', 'nobody', 'no-one-either']))
  assert answer['strategy'].numpy().tolist() == [b'user', b'popular', b'popular']
  movies, scores = answer['movie_ids'].numpy(), answer['scores'].numpy()
  assert movies[1].tolist() == movies[2].tolist() and len(set(movies[1])) == TOP_K
  counts = _recent_counts(results.outputs[('FileBasedExampleGen', 'Examples')])
  # The scores are the 30-day rating counts, best first; no movie left out has more.
  assert scores[1].tolist() == [float(counts[movie]) for movie in movies[1]]
  assert scores[1].tolist() == sorted(scores[1], reverse=True)
  assert max(count for movie, count in counts.items() if movie not in set(movies[1])) \
      <= scores[1][-1]


def test_known_users_beside_unknown_ones_are_answered_as_if_alone(pushed_model):
  serve = pushed_model.signatures['serving_default']
  alone = serve(user_id=tf.constant(['1', '2']))
  mixed = serve(user_id=tf.constant(['nobody', '1', 'no-one-either', '2']))
  assert mixed['strategy'].numpy()[[1, 3]].tolist() == [b'user', b'user']
  assert mixed['movie_ids'].numpy()[[1, 3]].tolist() == alone['movie_ids'].numpy().tolist()
  np.testing.assert_array_equal(mixed['scores'].numpy()[[1, 3]], alone['scores'].numpy())


def test_the_fallback_honours_exclude_movie_ids(pushed_model):
  popular = pushed_model.signatures['serving_default'](user_id=tf.constant(['nobody']))
  ranking = popular['movie_ids'].numpy()[0]
  answer = pushed_model.signatures['serving_exclude'](
      user_id=tf.constant(['nobody']), exclude_movie_ids=tf.constant([ranking[:5]]))
  assert answer['strategy'].numpy().tolist() == [b'popular']
  assert answer['movie_ids'].numpy()[0, :TOP_K - 5].tolist() == ranking[5:].tolist()


def test_exclude_seen_export_never_returns_training_movies(first_run, small_dataset):
  """Re-trained with --exclude-seen, for 2 epochs (floor unreachable: nothing is pushed)."""
  _, workdir, _ = first_run
  _run(small_dataset, workdir, *RETRIEVAL, '--exclude-seen', '--min-accuracy', '1.01',
       '--epochs', '2')
  results = latest_run_results(str(workdir / 'metadata.sqlite'))
  train = ratings_of_split(results.outputs[('FileBasedExampleGen', 'Examples')], 'train')
  seen = {}
  for user, movie in zip(train.user_ids, train.movie_ids):
    seen.setdefault(user, set()).add(movie)
  users = sorted(seen)
  model = tf.saved_model.load(str(pathlib.Path(results.model_uri) / 'Format-Serving'))
  answer = model.signatures['serving_default'](user_id=tf.constant(users))['movie_ids'].numpy()
  for user, movies in zip(users, answer):
    assert not set(movies) & seen[user]
    assert b'' not in set(movies)  # the catalogue is big enough to fill every slot
  # An unknown user has seen nothing: the whole fallback ranking.
  fallback = model.signatures['serving_default'](user_id=tf.constant(['nobody']))
  assert b'' not in set(fallback['movie_ids'].numpy()[0])
  assert fallback['strategy'].numpy().tolist() == [b'popular']
