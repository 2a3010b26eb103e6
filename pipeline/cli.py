"""Command line: `python -m pipeline run ...` and `python -m pipeline recommend ...`."""
import argparse
import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import sys
import time
import typing
from typing import Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import components
from components.ingest import movielens, spans
from components.model.config import (DERIVED_FIELDS, PROFILE_DIR, TUNED, TUNED_FIELDS,
                                     ModelConfig)
from pipeline import beam_presets
from pipeline.config import PREVIOUS_STATISTICS_RESOLVER, PipelineConfig
from pipeline.datasets import DATASETS, SyntheticSize

EXIT_NOT_BLESSED = 3  # the run worked, but the model did not clear the gate
# The serving model name `run` pushes to without --model or --model-name.
DEFAULT_MODEL_NAME = PipelineConfig(data_dir='').serving_model_name

# Errors whose message is the whole story; anything else gets its traceback.
USER_ERRORS = ('MovieLensFormatError', 'DataAnomaliesError', 'DataDriftError', 'DownloadError',
               'OutdatedModelError')


def _comma_separated_ints(text: str) -> Tuple[int, ...]:
  try:
    return tuple(int(size) for size in text.split(',') if size.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'expected comma-separated integers such as 128,64, got {text!r}') from None


def _flag(field: dataclasses.Field) -> str:
  """A config field's option: --<name>; for a switch that is on by default, --no-<name without
  use_>; or the field's own `flag`."""
  if 'flag' in field.metadata:
    return field.metadata['flag']
  if field.type is bool and field.default:
    return '--no-' + field.name.removeprefix('use_').replace('_', '-')
  return '--' + field.name.replace('_', '-')


def _dest(field: dataclasses.Field) -> str:
  """Where argparse puts a config field's value: the field's name, or its flag's (--model)."""
  return field.name if field.type is bool else _flag(field)[2:].replace('-', '_')


def _shown(value) -> str:
  return ','.join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_config_arguments(group, config_class, names: Iterable[str],
                         per_kind: Optional[Mapping[str, Mapping[str, object]]] = None,
                         defaults: Optional[Mapping[str, object]] = None,
                         derived: Iterable[str] = ()) -> None:
  """A flag for each named field of a config dataclass, from the field itself: its help
  (components/model/config.py `documented`), its type and its default, printed once.

  per_kind: kind -> {field: default} (TUNED); those fields stay None unless given, and their
  help lists each kind's default.
  defaults: field -> this command's default, in place of the field's (shown in the help).
  derived: fields the data may set (DERIVED_FIELDS): they stay None unless given too, and their
  help says so.
  """
  defaults = defaults or {}
  fields = {field.name: field for field in dataclasses.fields(config_class)}
  per_kind = per_kind or {}
  derived = set(derived)
  tuned_names = {name for values in per_kind.values() for name in values} | derived
  for name in names:
    field = fields[name]
    help_text = field.metadata['help']
    if field.type is bool and field.default:  # a switch: its flag turns the field off
      group.add_argument(_flag(field), dest=name, action='store_false',
                         help=f'turn off {help_text} (on by default)')
      continue
    if field.type is bool:
      group.add_argument(_flag(field), dest=name, action='store_true',
                         help=f'{help_text} (off by default)')
      continue
    value_type = field.type
    if typing.get_origin(value_type) is Union:  # Optional[X]
      value_type = next(arg for arg in typing.get_args(value_type) if arg is not type(None))
    choices = field.metadata.get('choices')
    metavar = field.metadata.get('metavar', None if choices else {int: 'N', float: 'X'}.get(
        value_type))
    if typing.get_origin(value_type) is tuple:
      value_type, metavar = _comma_separated_ints, 'N,N,...'
    if name in tuned_names:
      default = None
      shown = 'per model kind: ' + ', '.join(
          f'{kind} {_shown(values.get(name, field.default))}' for kind, values in per_kind.items())
      if name in derived:
        shown += '; or chosen for the data'
    else:
      default = defaults.get(name, field.default)
      shown = _shown(default)
    group.add_argument(_flag(field), dest=_dest(field), type=value_type, default=default,
                       choices=choices, metavar=metavar,
                       help=help_text if field.default is None else
                       f'{help_text} (default: {shown})')


# ModelConfig's fields that are flags: the documented ones (the others come from the data).
_MODEL_FLAG_FIELDS = tuple(field.name for field in dataclasses.fields(ModelConfig)
                           if 'help' in field.metadata)


def rating_scale_of(data_dir: str) -> str:
  """The rating scale of the raw files' format (of the newest span, with span folders)."""
  numbers = spans.span_numbers(data_dir)
  folder = spans.span_folder(data_dir, numbers[-1]) if numbers else data_dir
  return movielens.RATING_SCALE_OF_FORMAT[movielens.detect_format(folder)]


# PipelineConfig's fields that are flags, by help group.
_DATA_FIELDS = ('split', 'eval_percent', 'valid_percent', 'train_spans', 'drift_action',
                'max_rating_drift', 'max_id_drift')
_TIMELINE_FIELDS = ('min_rating', 'min_timeline_length', 'timeline_eval_percent')
_GATE_FIELDS = ('gate_k', 'min_accuracy', 'max_regression', 'max_rmse', 'warm_start', 'refit',
                'model_name')
_RUN_FIELDS = ('workdir',)
PIPELINE_FLAG_FIELDS = _DATA_FIELDS + _TIMELINE_FIELDS + _GATE_FIELDS + _RUN_FIELDS


def add_run_arguments(parser: argparse.ArgumentParser,
                      per_kind_defaults: Optional[Mapping[str, Mapping[str, object]]] = None,
                      data_defaults: Optional[Mapping[str, object]] = None) -> None:
  """`run`'s flags on parser. per_kind_defaults: kind -> {data field: default} for a caller
  whose defaults depend on the model kind (bench-quality's --split): those flags stay None
  unless given, and their help lists each kind's default. data_defaults: data field -> this
  command's own default (replay's --drift-action)."""
  data = parser.add_argument_group('data')
  data.add_argument('--dataset', choices=DATASETS, default='synthetic',
                    help='synthetic (offline), or a GroupLens release (downloaded with '
                    'checksum, or read from --data-dir) (default: synthetic)')
  data.add_argument('--data-dir', help='an extracted MovieLens folder (u.data..., '
                    'ratings.dat... or ratings.csv...), or a folder of such folders named '
                    'span-1, span-2, ... (each run ingests the newest); skips the download')
  data.add_argument('--cache-dir', help='where downloads go (default: $MOVIELENS_CACHE_DIR or '
                    '~/.cache/movielens-recommender)')
  add_config_arguments(data, PipelineConfig, _DATA_FIELDS, per_kind=per_kind_defaults,
                       defaults=data_defaults)
  for name, default in dataclasses.asdict(SyntheticSize()).items():
    data.add_argument(f'--synthetic-{name.replace("_", "-")}', type=int, default=default,
                      metavar='N',
                      help=f'synthetic data: {name.replace("_", " ")} (default: {default})')
  data.add_argument('--infer-schema', action='store_true',
                    help='infer the schema with SchemaGen instead of the curated one')

  add_model_arguments(parser)
  add_config_arguments(parser.add_argument_group('sequential: timelines built from the ratings'),
                       PipelineConfig, _TIMELINE_FIELDS)
  add_config_arguments(parser.add_argument_group('warm start, evaluation gate and push'),
                       PipelineConfig, _GATE_FIELDS)

  run = parser.add_argument_group('run')
  add_config_arguments(run, PipelineConfig, _RUN_FIELDS)
  run.add_argument('--beam-preset', choices=sorted(beam_presets.PRESETS), default='in-memory',
                   help='named Beam options for the data stages (pipeline/beam_presets.py): '
                   'in-memory, multi-processing (a worker per core), portable-local, flink, '
                   'spark, dataflow (default: in-memory)')
  run.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                   help='a Beam pipeline option added after the preset\'s, e.g. '
                   '--beam-arg=--direct_num_workers=2 (repeatable)')
  run.add_argument('--stop-after', metavar='COMPONENT',
                   help='run only the components up to this one (its id, e.g. '
                   'FileBasedExampleGen or Transform): a partial run, for measuring or '
                   'debugging the stages before it')
  run.add_argument('--no-cache', action='store_true',
                   help='re-run every component even if its inputs are unchanged')
  run.add_argument('--verbose', action='store_true', help='show all TFX and Beam logs')


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
  """A flag for every documented ModelConfig field (the kind's tuned ones unset unless given)."""
  add_config_arguments(parser.add_argument_group('model (components/model/config.py ModelConfig)'),
                       ModelConfig, _MODEL_FLAG_FIELDS, per_kind=TUNED,
                       derived=DERIVED_FIELDS)


def model_config_from_args(args: argparse.Namespace, **data_fields) -> ModelConfig:
  """The model config of add_model_arguments' flags: the kind's tuned values where a flag is
  unset; data_fields: fields the flags do not set (rating_scale). The given flags of fields the
  data may set are named in its `fixed`: the data never overrides them."""
  values = {field.name: getattr(args, _dest(field))
            for field in dataclasses.fields(ModelConfig) if field.name in _MODEL_FLAG_FIELDS}
  open_names = set(TUNED_FIELDS) | set(DERIVED_FIELDS)
  given = tuple(name for name in DERIVED_FIELDS if values.get(name) is not None)
  return ModelConfig.tuned(**data_fields, fixed=given, **{
      name: value for name, value in values.items()
      if value is not None or name not in open_names})  # unset: the kind's tuned value


def config_from_args(args: argparse.Namespace, data_dir: str,
                     rating_scale: Optional[str] = None) -> PipelineConfig:
  """The run's config from its flags; rating_scale: the data's (default: read from data_dir's
  files, rating_scale_of)."""
  model = model_config_from_args(args, rating_scale=rating_scale or rating_scale_of(data_dir))
  pipeline_values = {name: getattr(args, name) for name in PIPELINE_FLAG_FIELDS}
  pipeline_values['workdir'] = os.path.abspath(args.workdir)
  return PipelineConfig(
      data_dir=str(data_dir), model=model, **pipeline_values,
      spans=bool(spans.span_numbers(data_dir)),
      schema_file=None if args.infer_schema else PipelineConfig.schema_file,
      beam_args=beam_presets.beam_args(args.beam_preset, args.beam_arg),
      enable_cache=not args.no_cache)


def _date(text: str) -> int:
  from pipeline.replay import parse_date
  return parse_date(text)


class _ProgressFilter(logging.Filter):
  """Keeps TFX's 'Component X is running/finished' lines, errors, and what this project's
  components log themselves (the Trainer's catalogue and ensemble members); drops the rest,
  and the error a first run's resolver of the previous run's statistics logs (there are none
  yet: components/validation.py)."""
  PROGRESS = re.compile(r'Component \S+ is (running|finished)')
  OWN_COMPONENTS = os.path.dirname(os.path.abspath(components.__file__)) + os.sep
  NOTHING_TO_COMPARE = re.compile(
      rf'resolving inputs for {PREVIOUS_STATISTICS_RESOLVER}: .* returned None')

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if self.NOTHING_TO_COMPARE.search(message):
      return False
    return (record.levelno >= logging.ERROR or record.pathname.startswith(self.OWN_COMPONENTS)
            or bool(self.PROGRESS.search(message)))


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
  from pipeline.results import describe_fit, latest_run_results
  results = latest_run_results(config.metadata_path)
  print('\nEvaluation (eval split, whole catalogue):')
  baseline = results.baseline_metrics
  print(f'  {"metric":<22} {"this model":>10}' + (f' {"blessed baseline":>17}' if baseline else ''))
  for name, value in sorted(results.metrics.items()):
    if name == 'example_count':
      continue
    baseline_value = f' {baseline[name]:>17.4f}' if name in baseline else ''
    print(f'  {name:<22} {value:>10.4f}{baseline_value}')
  if 'example_count' in results.metrics:
    print(f'  ({int(results.metrics["example_count"]):,} eval examples; per user segment: '
          'the model card)')
  print(f'Model:      {results.model_uri}')
  chosen = results.data_settings()
  if chosen:
    print('Settings chosen for the data (each flag overrides; why: the model card): ' +
          ', '.join(f'{name} {value}' for name, value in chosen.items()))
  for trainer in ('Trainer', 'Refit'):
    fits = results.fits(trainer)
    if fits:
      print(f'{trainer + ":":<11} ' + '; '.join(describe_fit(fit) for fit in fits))
  model_run = results.outputs.get(('Trainer', 'ModelRun'))
  if model_run:
    print(f'Training curves (losses, validation top-k accuracy per epoch): tensorboard '
          f'--logdir {model_run}')
    if config.model.profile_steps:
      print(f'Profiler trace ({config.model.profile_steps} steps): '
            f'{os.path.join(model_run, PROFILE_DIR)} (TensorBoard\'s Profile tab)')
  print(f'Evaluation: {results.evaluation_uri}')
  if results.blessed:
    also = config.model.model_kind.describe_gate(config)  # multitask: ' and rating_rmse <= x'
    print(f'Blessed: top_{config.gate_k}_accuracy >= {config.min_accuracy}{also} and no '
          'regression against the latest blessed model.')
  else:
    print('NOT blessed: the model did not clear the gate; nothing was pushed.')
    for failure in results.failed_thresholds:
      print(f'  {failure}')
  if results.already_served:
    print(f'Already serving this model: {results.pushed_path} (no new version)')
  elif results.pushed:
    print(f'Pushed to: {results.pushed_path}')
  if results.model_card:
    print(f'Model card: {results.model_card} (and model_card.md beside it)')
  print(f'Serving model base path: {config.serving_model_dir}')
  if results.rollout:
    print(f'Rollout:    {results.rollout} ({results.models_config}; `python -m serving.rollout '
          'promote|rollback` moves the labels)')
  return 0 if results.blessed else EXIT_NOT_BLESSED


class WorkdirError(Exception):
  """The workdir cannot be written, or another run is using it."""


LOCK_FILE = 'run.lock'


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
  """Holds <workdir>/run.lock, which names the holder's pid, for one run.

  A second run on the same workdir fails at once rather than share its MLMD and artifacts;
  and the holder knows that any execution still RUNNING in the workdir's MLMD belongs to a run
  whose process died. The lock is an flock: the system releases it when its process ends,
  however it ends, so a killed run leaves no lock behind.

  Raises:
    WorkdirError: the workdir cannot be created or written, or another process holds it.
  """
  def unwritable(path, reason):
    return WorkdirError(f'cannot write to {path} ({reason}): pass --workdir a folder you can '
                        'write to')

  try:
    os.makedirs(workdir, exist_ok=True)
    lock = open(os.path.join(workdir, LOCK_FILE), 'a+',  # pylint: disable=consider-using-with
                encoding='utf-8')
  except OSError as error:
    raise unwritable(workdir, error.strerror or error) from None
  metadata_path = os.path.join(workdir, 'metadata.sqlite')  # PipelineConfig.metadata_path
  if os.path.exists(metadata_path) and not os.access(metadata_path, os.W_OK):
    lock.close()
    raise unwritable(metadata_path, 'read-only')
  with lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock.seek(0)
      holder = lock.read().strip() or 'unknown'
      raise WorkdirError(f'another run (pid {holder}) is using the workdir {workdir}: wait for '
                         'it to end, or pass another --workdir') from None
    lock.truncate(0)
    lock.write(f'{os.getpid()}\n')
    lock.flush()
    try:
      yield
    finally:
      lock.truncate(0)


def run(args: argparse.Namespace) -> int:
  try:
    with workdir_lock(os.path.abspath(args.workdir)):
      return _run_locked(args)
  except WorkdirError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2


def synthetic_size(args: argparse.Namespace) -> SyntheticSize:
  return SyntheticSize(args.synthetic_num_users, args.synthetic_num_movies,
                       args.synthetic_num_ratings, args.synthetic_seed)


def replay(args: argparse.Namespace) -> int:
  from pipeline import replay as span_replay
  try:
    with workdir_lock(os.path.abspath(args.workdir)):
      return span_replay.replay(args, run_span=_run_locked)
  except WorkdirError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2


def _run_locked(args: argparse.Namespace) -> int:
  from pipeline import datasets  # light: resolve the data before TFX's slow imports

  try:
    data_dir = datasets.resolve_data_dir(args.dataset, args.workdir, args.data_dir,
                                         args.cache_dir, synthetic_size(args))
    config = config_from_args(args, data_dir)
  except Exception as error:  # pylint: disable=broad-except
    message = user_error_message(error) or (str(error) if isinstance(error, ValueError) else None)
    if message is None:
      raise
    print(f'error: {message}', file=sys.stderr)
    return 2
  from pipeline.pipeline import create_pipeline
  from pipeline.results import fail_abandoned_executions
  from tfx import v1 as tfx

  _configure_logging(args.verbose)
  print(f'Data:     {config.data_dir}')
  if config.spans:
    numbers = spans.span_numbers(config.data_dir)
    window = (f'the newest {config.train_spans} spans' if config.train_spans else
              'every span') + ' ingested so far (--train-spans)'
    print(f'Spans:    {spans.describe(numbers)} in the folder; this run ingests span '
          f'{numbers[-1]} and trains on {window}')
  print(f'Workdir:  {config.workdir} (artifacts in pipeline_root/, MLMD in metadata.sqlite)')
  abandoned = fail_abandoned_executions(config.metadata_path)  # we hold the workdir: theirs died
  if abandoned:
    print(f'Marked FAILED in MLMD: {", ".join(abandoned)}, left running by an earlier run '
          'whose process died')
  started = time.time()
  # TFX's Beam executors parse sys.argv + the Beam args as absl flags (its TODO b/174174381):
  # this process's own arguments (a host's `-v`, read as --verbosity) must not reach them.
  own_argv, sys.argv = sys.argv, sys.argv[:1]
  try:
    pipeline = create_pipeline(config)
    run_options = None
    if args.stop_after:
      ids = [component.id for component in pipeline.components]
      if args.stop_after not in ids:
        print(f'error: --stop-after {args.stop_after}: no such component; the pipeline has '
              f'{", ".join(ids)}', file=sys.stderr)
        return 2
      from tfx.orchestration import pipeline as tfx_pipeline  # not in tfx.v1 (1.16)
      run_options = tfx_pipeline.RunOptions(to_nodes=[args.stop_after])
    tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
  except Exception as error:  # pylint: disable=broad-except
    message = user_error_message(error)
    if message is None:
      raise
    print(f'\nerror: {message}', file=sys.stderr)
    return 1
  finally:
    sys.argv = own_argv
  print(f'\nPipeline finished in {time.time() - started:.0f}s')
  if args.stop_after:
    print(f'Ran the components up to {args.stop_after} (--stop-after): no model to report')
    return 0
  return print_results(config)


def _pushed_models_hint(workdir: str, model_name: str) -> str:
  """'; <workdir>/serving_models holds a, b: pass --model-name' when it holds other names."""
  root = os.path.join(workdir, 'serving_models')
  names = sorted(name for name in (os.listdir(root) if os.path.isdir(root) else [])
                 if os.path.isdir(os.path.join(root, name)) and name != model_name)
  return f'; {root} holds {", ".join(names)}: pass --model-name' if names else ''


def recommend(args: argparse.Namespace) -> int:
  import tensorflow as tf

  from serving import errors as serving_errors
  from serving import saved_model
  from serving.recommendations import make_request, print_recommendations
  try:
    model_dir = args.model_dir or saved_model.latest_version_dir(
        os.path.join(args.workdir, 'serving_models', args.model_name))
  except FileNotFoundError as error:  # nothing pushed under that name
    print(f'error: {error}{_pushed_models_hint(args.workdir, args.model_name)}',
          file=sys.stderr)
    return 1
  print(f'Model: {model_dir}')
  try:
    serving_fn = saved_model.load(model_dir)
  except OSError:  # --model-dir is not a SavedModel folder
    print(f'error: no SavedModel (saved_model.pb) in {model_dir}: pass --model-dir a pushed '
          'version folder, such as <workdir>/serving_models/<name>/<version>', file=sys.stderr)
    return 1
  try:
    request = make_request(saved_model.input_names(serving_fn), args.user or [],
                           [history.split(',') for history in args.history or []])
    rows = saved_model.recommend(serving_fn, request, args.k)
  except ValueError as error:  # users for a sequential model, or the other way round
    print(f'error: {error}', file=sys.stderr)
    return 2
  except tf.errors.InvalidArgumentError as error:  # a model exported before the fallback
    print(f'error: {serving_errors.from_tensorflow(error).message}', file=sys.stderr)
    return 2
  print_recommendations(request, rows)
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m pipeline', allow_abbrev=False,
      description='MovieLens recommender: a TFX pipeline from raw ratings to a pushed model.',
      epilog='Exit codes of run: 0 blessed and pushed; 1 the run failed (bad input data, '
      'anomalies, a failed component); 2 bad arguments or dataset, or a workdir that cannot '
      'be written or that another run is using; 3 the model was not blessed, so nothing was '
      'pushed. Of replay: 0 every span ran (blessed or not); 1 a span\'s run failed; 2 bad '
      'arguments or data. Of recommend: 1 no model to load; 2 a bad request.')
  commands = parser.add_subparsers(dest='command', required=True)
  # Each flag's help states its default itself, once (ArgumentDefaultsHelpFormatter would add
  # it again, and print a switch's bool as its default).
  run_parser = commands.add_parser('run', allow_abbrev=False,
                                   help='run the pipeline locally (Beam DirectRunner)')
  add_run_arguments(run_parser)
  run_parser.set_defaults(handler=run)
  replay_parser = commands.add_parser(
      'replay', allow_abbrev=False,
      help='cut a dataset into spans by time and run the pipeline once per span, as a '
      'scheduler would (pipeline/replay.py)')
  # Consecutive spans differ in who rates (ml-100k's weeks: user id L-infinity 0.17-0.57, past
  # --max-id-drift 0.1): a replay warns of drift rather than stop most weeks.
  add_run_arguments(replay_parser, data_defaults={'drift_action': 'warn'})
  spans_group = replay_parser.add_argument_group('replay: the spans')
  spans_group.add_argument('--span-days', type=float, default=7, metavar='DAYS',
                           help='days of ratings per span after the first (default: 7)')
  spans_group.add_argument('--from', dest='start', type=_date, metavar='YYYY-MM-DD',
                           help='span 1 holds the ratings before this day (default: the day '
                           'by which 100 - eval_percent %% of the ratings were made)')
  spans_group.add_argument('--until', type=_date, metavar='YYYY-MM-DD',
                           help='ratings from this day on are left out (default: none)')
  spans_group.add_argument('--canary', choices=('promote', 'hold'), default='promote',
                           help='before each span\'s run, promote the canary the previous run '
                           'pushed (it served its span), or hold it (later pushes wait on '
                           'disk) (default: promote)')
  replay_parser.set_defaults(handler=replay)
  recommend_parser = commands.add_parser('recommend',
                                         help='top-k movies for users from a pushed model')
  recommend_parser.add_argument('--user', action='append', help='a user id (repeatable)')
  recommend_parser.add_argument('--history', action='append', metavar='ID,ID,...',
                                help='sequential models: movie ids watched, oldest first, '
                                'comma-separated (repeatable); other models read --user')
  recommend_parser.add_argument('-k', type=int, default=10, help='movies per user (default: 10)')
  recommend_parser.add_argument('--workdir', default='workdir',
                                help='the pipeline workdir (default: ./workdir)')
  recommend_parser.add_argument('--model-name', default=DEFAULT_MODEL_NAME, metavar='NAME',
                                help='serving model name (default: the one `run` pushes to '
                                f'by default, {DEFAULT_MODEL_NAME})')
  recommend_parser.add_argument('--model-dir',
                                help='a SavedModel folder (default: the latest pushed version)')
  recommend_parser.set_defaults(handler=recommend)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  return args.handler(args)
