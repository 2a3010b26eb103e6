"""Command line: `python -m pipeline run ...` and `python -m pipeline recommend ...`."""
import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from typing import List, Optional

import components
from components.model.config import INDEX_KINDS, MODEL_KINDS, NEGATIVES, TUNED_FIELDS, ModelConfig
from pipeline import beam_presets
from pipeline.config import SPLITS, PipelineConfig
from pipeline.datasets import DATASETS, SyntheticSize

EXIT_NOT_BLESSED = 3  # the run worked, but the model did not clear the gate

# Errors whose message is the whole story; anything else gets its traceback.
USER_ERRORS = ('MovieLensFormatError', 'DataAnomaliesError', 'DownloadError')


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
  defaults = ModelConfig()
  data = parser.add_argument_group('data')
  data.add_argument('--dataset', choices=DATASETS, default='synthetic',
                    help='synthetic (offline, default), ml-100k or ml-1m (downloaded from '
                    'GroupLens with checksum, or read from --data-dir)')
  data.add_argument('--data-dir', help='an extracted MovieLens folder (u.data... or '
                    'ratings.dat...); skips the download')
  data.add_argument('--cache-dir', help='where downloads go (default: $MOVIELENS_CACHE_DIR or '
                    '~/.cache/movielens-recommender)')
  data.add_argument('--split', choices=SPLITS, default='random',
                    help='random: stable hash of each rating; time: the latest ratings are '
                    'the eval split (default: random)')
  data.add_argument('--eval-percent', type=int, default=20,
                    help='share of ratings in the eval split (default: 20)')
  for name, default in dataclasses.asdict(SyntheticSize()).items():
    data.add_argument(f'--synthetic-{name.replace("_", "-")}', type=int, default=default,
                      help=f'synthetic data: {name.replace("_", " ")} (default: {default})')
  data.add_argument('--infer-schema', action='store_true',
                    help='infer the schema with SchemaGen instead of the curated one')

  model = parser.add_argument_group('model')
  model.add_argument('--model', choices=MODEL_KINDS, default=defaults.kind,
                     help=f'model kind (default: {defaults.kind})')
  model.add_argument('--epochs', type=int,
                     help='default: per model kind (components/model/config.py TUNED)')
  model.add_argument('--batch-size', type=int, default=defaults.batch_size)
  model.add_argument('--learning-rate', type=float, default=defaults.learning_rate)
  model.add_argument('--optimizer', choices=('adagrad', 'adam'), default=defaults.optimizer)
  model.add_argument('--embedding-dim', type=int, default=defaults.embedding_dim)
  model.add_argument('--layer-sizes', default=','.join(map(str, defaults.layer_sizes)),
                     help='dense layers on each tower, comma-separated; the last is the '
                     f'embedding size (default: {",".join(map(str, defaults.layer_sizes))})')
  model.add_argument('--use-timestamps', action='store_true',
                     help='add timestamp buckets and the z-scored timestamp to the query tower')
  model.add_argument('--no-title', dest='use_title', action='store_false',
                     help='leave title tokens out of the candidate tower')
  model.add_argument('--no-genres', dest='use_genres', action='store_false',
                     help='leave genres out of the candidate tower')
  model.add_argument('--timestamp-buckets', type=int, default=defaults.timestamp_buckets)
  model.add_argument('--top-k', type=int, default=defaults.top_k,
                     help=f'results per query in the exported model (default: {defaults.top_k})')
  model.add_argument('--index', choices=INDEX_KINDS, default=defaults.index,
                     help='serving index: scann, or brute-force for stock TF Serving')
  model.add_argument('--exclude-seen', action='store_true',
                     help='serving never returns a user\'s training movies')
  model.add_argument('--max-excluded', type=int, default=defaults.max_excluded,
                     help='most movie ids one serving_exclude request may exclude '
                     f'(default: {defaults.max_excluded})')
  model.add_argument('--negatives', choices=NEGATIVES,
                     help='what the retrieval softmax ranks each label against: the batch\'s '
                     'other movies, or the whole catalogue (default: per model kind)')
  model.add_argument('--temperature', type=float,
                     help='divides the retrieval logits (default: per model kind)')
  model.add_argument('--embedding-l2', type=float,
                     help='L2 penalty on the embedding tables (default: per model kind)')
  model.add_argument('--query-dropout', type=float,
                     help='dropout on the query tower\'s input, in training (default: per '
                     'model kind)')
  model.add_argument('--ensemble-size', type=int,
                     help='train the model this many times on successive seeds and serve the '
                     'sum of their scores (default: per model kind)')
  model.add_argument('--retrieval-weight', type=float, default=defaults.retrieval_weight,
                     help='multitask: weight of the retrieval loss (default: %(default)s)')
  model.add_argument('--rating-weight', type=float, default=defaults.rating_weight,
                     help='multitask: weight of the rating loss (default: %(default)s)')
  model.add_argument('--max-context-length', type=int, default=defaults.max_context_length,
                     help='sequential: most recent movies the query tower reads '
                     '(default: %(default)s)')
  model.add_argument('--seed', type=int, default=defaults.seed)

  timelines = parser.add_argument_group('sequential: timelines built from the ratings')
  timelines.add_argument('--min-rating', type=float, default=PipelineConfig.min_rating,
                         help='ratings below are left out (default: %(default)s)')
  timelines.add_argument('--min-timeline-length', type=int,
                         default=PipelineConfig.min_timeline_length,
                         help='users with fewer kept ratings are left out (default: %(default)s)')
  timelines.add_argument('--timeline-eval-percent', type=int,
                         default=PipelineConfig.timeline_eval_percent,
                         help='share of timeline examples in eval (default: %(default)s)')

  gate = parser.add_argument_group('evaluation gate and push')
  gate.add_argument('--gate-k', type=int, default=100, choices=(10, 50, 100),
                    help='the top-k accuracy that decides the blessing (default: 100)')
  gate.add_argument('--min-accuracy', type=float, default=PipelineConfig.min_accuracy,
                    help='absolute floor on that accuracy (default: %(default)s)')
  gate.add_argument('--max-regression', type=float, default=0.0,
                    help='allowed drop against the latest blessed model (default: 0)')
  gate.add_argument('--max-rmse', type=float, default=PipelineConfig.max_rmse,
                    help='multitask: upper bound on the eval ratings\' RMSE (default: %(default)s)')
  gate.add_argument('--model-name', help='serving model name (default: the model kind)')

  run = parser.add_argument_group('run')
  run.add_argument('--workdir', default='workdir',
                   help='artifacts, MLMD and serving_models/ go here (default: ./workdir)')
  run.add_argument('--beam-preset', choices=sorted(beam_presets.PRESETS), default='in-memory',
                   help='named Beam options for the data stages (pipeline/beam_presets.py): '
                   'in-memory, multi-processing (a worker per core), portable-local, flink, '
                   'spark, dataflow')
  run.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                   help='a Beam pipeline option added after the preset\'s, e.g. '
                   '--beam-arg=--direct_num_workers=2 (repeatable)')
  run.add_argument('--no-cache', action='store_true',
                   help='re-run every component even if its inputs are unchanged')
  run.add_argument('--verbose', action='store_true', help='show all TFX and Beam logs')


def config_from_args(args: argparse.Namespace, data_dir: str) -> PipelineConfig:
  tuned = {name: getattr(args, name) for name in TUNED_FIELDS
           if getattr(args, name) is not None}  # given: overrides the kind's tuned value
  model = ModelConfig.tuned(
      args.model, embedding_dim=args.embedding_dim,
      layer_sizes=tuple(int(size) for size in args.layer_sizes.split(',') if size),
      use_timestamps=args.use_timestamps, use_title=args.use_title, use_genres=args.use_genres,
      batch_size=args.batch_size, learning_rate=args.learning_rate,
      optimizer=args.optimizer, timestamp_buckets=args.timestamp_buckets, top_k=args.top_k,
      index=args.index, max_excluded=args.max_excluded, exclude_seen=args.exclude_seen,
      **tuned,
      retrieval_weight=args.retrieval_weight, rating_weight=args.rating_weight,
      max_context_length=args.max_context_length, seed=args.seed)
  return PipelineConfig(
      data_dir=str(data_dir), workdir=os.path.abspath(args.workdir), model=model,
      split=args.split, eval_percent=args.eval_percent,
      schema_file=None if args.infer_schema else PipelineConfig.schema_file,
      gate_k=args.gate_k, min_accuracy=args.min_accuracy, max_regression=args.max_regression,
      max_rmse=args.max_rmse, min_rating=args.min_rating,
      min_timeline_length=args.min_timeline_length,
      timeline_eval_percent=args.timeline_eval_percent, model_name=args.model_name,
      beam_args=beam_presets.beam_args(args.beam_preset, args.beam_arg),
      enable_cache=not args.no_cache)


class _ProgressFilter(logging.Filter):
  """Keeps TFX's 'Component X is running/finished' lines, errors, and what this project's
  components log themselves (the Trainer's catalogue and ensemble members); drops the rest."""
  PROGRESS = re.compile(r'Component \S+ is (running|finished)')
  OWN_COMPONENTS = os.path.dirname(os.path.abspath(components.__file__)) + os.sep

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.ERROR or record.pathname.startswith(self.OWN_COMPONENTS)
            or bool(self.PROGRESS.search(record.getMessage())))


_PROGRESS_FILTER = _ProgressFilter()


def _configure_logging(verbose: bool) -> None:
  """TFX logs through the 'absl' logger; without --verbose only its progress lines pass."""
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.INFO)
  if verbose:
    return
  absl_logger = logging.getLogger('absl')
  if _PROGRESS_FILTER not in absl_logger.filters:
    absl_logger.addFilter(_PROGRESS_FILTER)
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S'))
    absl_logger.addHandler(progress)
    absl_logger.propagate = False
  for noisy in ('tensorflow', 'apache_beam'):
    logging.getLogger(noisy).setLevel(logging.ERROR)


def user_error_message(error: BaseException) -> Optional[str]:
  """The message of a known user-facing error, even when Beam re-raised it as another type."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if type(error).__name__ in USER_ERRORS:
      return str(error)
    match = re.search(r'(%s): (.*?)(?: \[while running|\Z)' % '|'.join(USER_ERRORS),
                      str(error), re.S)
    if match:
      return match.group(2).strip()
    error = error.__cause__ or error.__context__
  return None


def print_results(config: PipelineConfig) -> int:
  from pipeline.results import latest_run_results
  results = latest_run_results(config.metadata_path)
  print('\nEvaluation (eval split, whole catalogue):')
  baseline = results.baseline_metrics
  print(f'  {"metric":<22} {"this model":>10}' + (f' {"blessed baseline":>17}' if baseline else ''))
  for name, value in sorted(results.metrics.items()):
    baseline_value = f' {baseline[name]:>17.4f}' if name in baseline else ''
    print(f'  {name:<22} {value:>10.4f}{baseline_value}')
  print(f'Model:      {results.model_uri}')
  print(f'Evaluation: {results.evaluation_uri}')
  if results.blessed:
    rmse = f' and rating_rmse <= {config.max_rmse}' if config.model.kind == 'multitask' else ''
    print(f'Blessed: top_{config.gate_k}_accuracy >= {config.min_accuracy}{rmse} and no '
          'regression against the latest blessed model.')
  else:
    print('NOT blessed: the model did not clear the gate; nothing was pushed.')
    for failure in results.failed_thresholds:
      print(f'  {failure}')
  if results.pushed:
    print(f'Pushed to: {results.pushed_path}')
  print(f'Serving model base path: {config.serving_model_dir}')
  return 0 if results.blessed else EXIT_NOT_BLESSED


def run(args: argparse.Namespace) -> int:
  from pipeline import datasets  # light: resolve the data before TFX's slow imports

  size = SyntheticSize(args.synthetic_num_users, args.synthetic_num_movies,
                       args.synthetic_num_ratings, args.synthetic_seed)
  try:
    data_dir = datasets.resolve_data_dir(args.dataset, args.workdir, args.data_dir,
                                         args.cache_dir, size)
    config = config_from_args(args, data_dir)
  except Exception as error:  # pylint: disable=broad-except
    message = user_error_message(error) or (str(error) if isinstance(error, ValueError) else None)
    if message is None:
      raise
    print(f'error: {message}', file=sys.stderr)
    return 2
  from pipeline.pipeline import create_pipeline
  from tfx import v1 as tfx

  _configure_logging(args.verbose)
  print(f'Data:     {config.data_dir}')
  print(f'Workdir:  {config.workdir} (artifacts in pipeline_root/, MLMD in metadata.sqlite)')
  started = time.time()
  # TFX's Beam executors parse sys.argv + the Beam args as absl flags (its TODO b/174174381):
  # this process's own arguments (a host's `-v`, read as --verbosity) must not reach them.
  own_argv, sys.argv = sys.argv, sys.argv[:1]
  try:
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
  except Exception as error:  # pylint: disable=broad-except
    message = user_error_message(error)
    if message is None:
      raise
    print(f'\nerror: {message}', file=sys.stderr)
    return 1
  finally:
    sys.argv = own_argv
  print(f'\nPipeline finished in {time.time() - started:.0f}s')
  return print_results(config)


def recommend(args: argparse.Namespace) -> int:
  import tensorflow as tf

  from serving import errors as serving_errors
  from serving import saved_model
  from serving.recommendations import make_request, print_recommendations
  model_dir = args.model_dir or saved_model.latest_version_dir(
      os.path.join(args.workdir, 'serving_models', args.model_name))
  print(f'Model: {model_dir}')
  serving_fn = saved_model.load(model_dir)
  try:
    request = make_request(saved_model.input_names(serving_fn), args.user or [],
                           [history.split(',') for history in args.history or []])
    rows = saved_model.recommend(serving_fn, request, args.k)
  except ValueError as error:  # users for a sequential model, or the other way round
    print(f'error: {error}', file=sys.stderr)
    return 2
  except tf.errors.InvalidArgumentError as error:  # an unknown user id, say
    print(f'error: {serving_errors.from_tensorflow(error).message}', file=sys.stderr)
    return 2
  print_recommendations(request, rows)
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m pipeline',
      description='MovieLens recommender: a TFX pipeline from raw ratings to a pushed model.',
      epilog='Exit codes of run: 0 blessed and pushed; 1 the run failed (bad input data, '
      'anomalies, a failed component); 2 bad arguments or dataset; 3 the model was not '
      'blessed, so nothing was pushed.')
  commands = parser.add_subparsers(dest='command', required=True)
  run_parser = commands.add_parser(
      'run', help='run the pipeline locally (Beam DirectRunner)',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  add_run_arguments(run_parser)
  run_parser.set_defaults(handler=run)
  recommend_parser = commands.add_parser('recommend',
                                         help='top-k movies for users from a pushed model')
  recommend_parser.add_argument('--user', action='append', help='a user id (repeatable)')
  recommend_parser.add_argument('--history', action='append', metavar='ID,ID,...',
                                help='sequential models: movie ids watched, oldest first, '
                                'comma-separated (repeatable); other models read --user')
  recommend_parser.add_argument('-k', type=int, default=10, help='movies per user (default: 10)')
  recommend_parser.add_argument('--workdir', default='workdir',
                                help='the pipeline workdir (default: ./workdir)')
  recommend_parser.add_argument('--model-name', default='retrieval',
                                help='serving model name (default: retrieval)')
  recommend_parser.add_argument('--model-dir',
                                help='a SavedModel folder (default: the latest pushed version)')
  recommend_parser.set_defaults(handler=recommend)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  return args.handler(args)
