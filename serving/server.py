"""The local model server: TF Serving's REST and gRPC APIs over pushed SavedModel folders.

    python -m serving --model_name retrieval --model_base_path <workdir>/serving_models/retrieval
    python -m serving --model_config_file models.config [--enable_batching
        --batching_parameters_file batching_parameters.txt]

Flags are TF Serving's where it has them, so the same command line and configuration files
work with `tensorflow_model_server`; each may also be spelled with dashes (--model-name).
By default the server listens on every network interface (--host 0.0.0.0): use
--host 127.0.0.1 to keep it to this machine. Ports: 8500 gRPC, 8501 REST.
"""
import argparse
import dataclasses
import os
import signal
import sys
import threading
from typing import List, Optional, Sequence

import tensorflow as tf

from serving import api, config_files, grpc_service, monitoring, processes, rest, saved_model
from serving.api import ServingApi
from serving.recommendations import DEFAULT_MODEL_NAME
from serving.config_files import BatchingParameters, ModelSource
from serving.grpc_service import make_grpc_server
from serving.models import ConfigFileWatcher, ModelManager, ServedModel
from serving.rest import RestServer

EVERY_INTERFACE = '0.0.0.0'


def _option(default, help_text: str):
  return dataclasses.field(default=default, metadata={'help': help_text})


@dataclasses.dataclass(frozen=True)
class ServerOptions:
  """How the server listens and what one request may ask of it.

  Each field is the `python -m serving` flag of the same name (TF Serving's name where TF
  Serving has the flag), with the field's default and help, so help and defaults cannot drift.
  """
  host: str = _option(EVERY_INTERFACE, f'address to listen on: {EVERY_INTERFACE} is every '
                      'network interface (reachable from other machines), 127.0.0.1 this '
                      'machine only')
  port: int = _option(8500, 'gRPC port')
  rest_api_port: int = _option(8501, 'REST port')
  file_system_poll_wait_seconds: float = _option(
      1.0, 'seconds between looks at the model base paths for new versions')
  max_request_rows: int = _option(
      api.DEFAULT_MAX_REQUEST_ROWS, 'most rows (users, histories) in one predict request; '
      'more is INVALID_ARGUMENT (HTTP 400) before any work')
  max_values_per_row: int = _option(
      api.DEFAULT_MAX_VALUES_PER_ROW, 'most values in one row of a predict input (a '
      'history\'s movies, e.g. context_movie_ids [batch, length]); more is INVALID_ARGUMENT '
      '(HTTP 400) before any work')
  max_response_bytes: int = _option(
      api.DEFAULT_MAX_RESPONSE_BYTES, 'largest predict response, as JSON or PredictResponse; '
      'larger is INVALID_ARGUMENT (HTTP 400)')
  rest_api_max_body_bytes: int = _option(rest.DEFAULT_MAX_BODY_BYTES,
                                         'largest REST request body (larger: HTTP 400)')
  rest_api_timeout_in_ms: int = _option(
      rest.DEFAULT_TIMEOUT_MS, 'a REST connection that sends nothing for this long (idle '
      'keep-alive, or stalled mid-request: HTTP 408) is closed')
  rest_api_listen_backlog: int = _option(
      rest.DEFAULT_LISTEN_BACKLOG, 'connections the REST port queues until they are accepted '
      '(the kernel caps it at net.core.somaxconn)')
  rest_api_num_threads: int = _option(
      rest.DEFAULT_NUM_THREADS, 'REST connections served at once, a thread each; more wait in '
      'the listen backlog')
  grpc_max_message_bytes: int = _option(grpc_service.DEFAULT_MAX_MESSAGE_BYTES,
                                        'largest gRPC request (larger: RESOURCE_EXHAUSTED)')
  grpc_max_threads: int = _option(
      grpc_service.DEFAULT_MAX_THREADS, 'gRPC calls handled at once, a thread each (TF '
      'Serving\'s default: 4 per CPU); more wait in gRPC\'s queue')
  grpc_channel_arguments: str = _option(
      '', 'gRPC server arguments, comma-separated key=value (e.g. '
      'grpc.max_connection_age_ms=2000); they win over this server\'s own')
  grpc_socket_path: str = _option(
      '', 'also serve gRPC on this Unix socket (clients: unix:<path>)')
  server_processes: int = _option(
      1, 'server processes answering on the same ports (SO_REUSEPORT), each with its own '
      'copy of the models: throughput past one core (serving/processes.py; not a TF Serving '
      'flag)')
  verbose: bool = _option(False, 'log every REST request')

  def __post_init__(self):
    """Ports may be 0 (any free port); every other number is a size or a time, so over 0."""
    grpc_service.parse_channel_arguments(self.grpc_channel_arguments)  # ValueError if malformed
    if self.grpc_socket_path and self.server_processes > 1:
      raise ValueError('--grpc_socket_path serves one process: a Unix socket path cannot be '
                       'shared by --server_processes')
    for field in dataclasses.fields(self):
      if field.type not in (int, float):
        continue
      value, port = getattr(self, field.name), _is_port(field.name)
      if value < 0 or (value == 0 and not port):
        raise ValueError(f'--{field.name} must be {"0 or more" if port else "over 0"}, '
                         f'got {value}')


def _is_port(name: str) -> bool:
  return name.endswith('port')


def _no_version_hint(model: ServedModel) -> str:
  """Why a model has no version to serve yet, and how to get one there."""
  base_path = model.source.base_path
  on_disk = saved_model.versions(base_path)
  if on_disk:
    return (f'none of its version folders {sorted(on_disk)} loaded (see the errors above); '
            'the server keeps watching and loads a version once its files change')
  if tf.io.gfile.isdir(base_path):
    where = f'{base_path} holds no version folder (<version>/saved_model.pb) yet'
  else:
    where = f'{base_path} does not exist yet'
  return (f'{where}. Train and push one: `make demo`, or `python -m pipeline run --workdir '
          f'WORKDIR` (it pushes to WORKDIR/serving_models/{model.name}); the server watches '
          'the folder and serves the first version that arrives')


class ModelServer:
  """Loads the models, then serves gRPC and REST until stop()."""

  def __init__(self, sources: Sequence[ModelSource] = (), options: ServerOptions = ServerOptions(),
               batching: Optional[BatchingParameters] = None, log=print,
               config_file: Optional[str] = None, config_poll_seconds: float = 0,
               allow_unavailable_labels: bool = False, metrics_path: Optional[str] = None,
               process: Optional[processes.ServerProcess] = None):
    """Serves sources, or the models of config_file (a models.config), read again every
    config_poll_seconds if that is over 0; with metrics_path, Prometheus metrics on the REST
    port there (serving/monitoring.py). process: this server is one of a supervisor's
    (--server_processes), sharing its ports and metrics (serving/processes.py). ValueError for
    a config it cannot serve."""
    self.options = options
    self.process = process
    if process:
      log = lambda message, log=log: log(f'[{process.name}] {message}')  # noqa: E731
    # With a metrics page, the processes of one server publish their counters for each other.
    self._shared_metrics = (processes.SharedMetrics(process) if process and metrics_path
                            else None)
    self.metrics = self._shared_metrics or monitoring.Metrics()
    self.metrics_path = metrics_path
    config_text = None
    if config_file:
      try:
        with tf.io.gfile.GFile(config_file) as file:
          config_text = file.read()
      except tf.errors.OpError as error:
        raise OSError(f'cannot read --model_config_file {config_file}: {error.message}') from None
      sources = config_files.parse_models_config(config_text, config_file)
    self.manager = ModelManager(sources, batching, options.file_system_poll_wait_seconds, log,
                                allow_unavailable_labels, self.metrics)
    self._config_watcher = None
    if config_file and config_poll_seconds > 0:
      self._config_watcher = ConfigFileWatcher(config_file, self.manager, config_poll_seconds,
                                               config_files.parse_models_config, log)
      self._config_text = config_text
    self.api = ServingApi(self.manager, options.max_request_rows, options.max_response_bytes,
                          options.max_values_per_row)
    self._log = log
    self._grpc = make_grpc_server(
        self.api, f'{options.host}:{options.port}', max_workers=options.grpc_max_threads,
        max_message_bytes=options.grpc_max_message_bytes,
        channel_arguments=grpc_service.parse_channel_arguments(options.grpc_channel_arguments),
        socket_path=options.grpc_socket_path, metrics=self.metrics,
        reuse_port=bool(process),
        reload_refusal=process and processes.RELOAD_REFUSAL.format(count=process.count))
    try:
      self._rest = RestServer((options.host, options.rest_api_port), self.api,
                              options.rest_api_max_body_bytes,
                              options.rest_api_timeout_in_ms / 1000,
                              options.rest_api_listen_backlog, options.verbose,
                              options.rest_api_num_threads, self.metrics, metrics_path,
                              reuse_port=bool(process))
    except OSError as error:
      raise OSError(f'cannot listen on {options.host}:{options.rest_api_port} for REST: '
                    f'{error}') from None
    self.grpc_port, self.rest_port = options.port, self._rest.server_address[1]
    self._rest_thread = threading.Thread(target=self._rest.serve_forever, daemon=True,
                                         name='rest')

  def start(self) -> 'ModelServer':
    self.manager.start()
    if self._shared_metrics:
      self._shared_metrics.start()
    if self.process:
      processes.stop_when_orphaned(self.process.supervisor, self._log)
    if self._config_watcher:
      self._config_watcher.start(applied_text=self._config_text)
    for name, model in self.manager.models.items():
      try:
        versions = [status.version for status in model.status() if status.state == 'AVAILABLE']
      except Exception:  # noqa: BLE001  (no versions yet: it is watched, and loads when pushed)
        versions = []
      labels = self.manager.labels(name)
      if versions:
        self._log(f'Model {name}: serving version(s) {versions} from {model.source.base_path}'
                  + (f', labels {labels}' if labels else ''))
      else:
        self._log(f'Model {name}: no version to serve yet: {_no_version_hint(model)}')
    self._grpc.start()
    self._rest_thread.start()
    host = self.options.host
    everywhere = (f' ({EVERY_INTERFACE}: every network interface; --host 127.0.0.1 for this '
                  'machine only)' if host == EVERY_INTERFACE else '')
    self._log(f'gRPC on {host}:{self.grpc_port}, REST on {host}:{self.rest_port}{everywhere} '
              f'(e.g. GET http://localhost:{self.rest_port}/v1/models/'
              f'{next(iter(self.manager.models))})')
    if self.metrics_path:
      self._log(f'Prometheus metrics: GET http://localhost:{self.rest_port}{self.metrics_path}')
    return self

  def stop(self) -> None:
    if self._rest_thread.is_alive():  # shutdown() waits for a serve_forever that never ran
      self._rest.shutdown()
    self._rest.server_close()
    self._grpc.stop(grace=2).wait()
    if self._config_watcher:
      self._config_watcher.stop()
    if self._shared_metrics:
      self._shared_metrics.stop()
    self.manager.stop()


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
  """A TF Serving flag, spelled with underscores as TF Serving does; the dashed spelling is
  accepted too but left out of --help, so each flag is listed once."""
  parser.add_argument('--' + name, dest=name, **kwargs)
  dashed = '--' + name.replace('_', '-')
  if dashed != '--' + name:
    parser.add_argument(dashed, dest=name, **{**kwargs, 'help': argparse.SUPPRESS,
                                              'default': argparse.SUPPRESS})


def _boolean(text: str) -> bool:
  if text.lower() not in ('true', 'false', '1', '0'):
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')
  return text.lower() in ('true', '1')


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """The description as written; each flag's help followed by its default, if it has one."""

  def _get_help_string(self, action):
    text = action.help or ''
    if action.default is False:
      return text + ' (default: off)'
    if (action.default in (None, '') or action.default is argparse.SUPPRESS
        or '%(default)' in text):
      return text
    return text + ' (default: %(default)s)'


def _option_flags(parser: argparse.ArgumentParser) -> None:
  for field in dataclasses.fields(ServerOptions):
    if field.type is bool:
      _flag(parser, field.name, action='store_true', help=field.metadata['help'])
    else:
      metavar = 'PORT' if _is_port(field.name) else {int: 'N', float: 'SECONDS'}.get(field.type)
      _flag(parser, field.name, type=field.type, default=field.default, metavar=metavar,
            help=field.metadata['help'])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='python -m serving', description=__doc__,
                                   formatter_class=_HelpFormatter)
  _flag(parser, 'model_name', default=DEFAULT_MODEL_NAME,
        help='the model\'s name in requests, with --model_base_path')
  _flag(parser, 'model_base_path', help='folder of numbered version folders (the Pusher\'s); '
        'this or --model_config_file')
  _flag(parser, 'model_config_file', help='a models.config (several models, version '
        'policies); this or --model_base_path')
  _flag(parser, 'enable_batching', nargs='?', const=True, default=False, type=_boolean,
        help='batch concurrent requests (also --enable_batching=true, as TF Serving)')
  _flag(parser, 'batching_parameters_file', help='TF Serving batching parameters (text proto); '
        'without it, the defaults of config_files.BatchingParameters')
  _flag(parser, 'model_config_file_poll_wait_seconds', type=float, default=0, metavar='SECONDS',
        help='read --model_config_file again this often and apply what changed (models, '
        'version policies, labels); a file that fails keeps the last good config serving. '
        '0: read it once')
  _flag(parser, 'allow_version_labels_for_unavailable_models', nargs='?', const=True,
        default=False, type=_boolean,
        help='a new version label may name a version that is not loaded yet (as TF Serving: '
        'needed for labels at start-up, and for a canary label on a version just pushed)')
  _flag(parser, 'monitoring_config_file', help='a MonitoringConfig (text proto): with '
        'prometheus_config { enable: true } Prometheus metrics are served on the REST port at '
        f'its path (default {monitoring.DEFAULT_PATH})')
  _option_flags(parser)
  parser.add_argument('--supervised_as', type=processes.ServerProcess.parse,
                      help=argparse.SUPPRESS)  # set by the supervisor for its children
  args = parser.parse_args(argv)
  if bool(args.model_base_path) == bool(args.model_config_file):
    parser.error('give either --model_base_path (and --model_name) or --model_config_file')
  if args.model_config_file_poll_wait_seconds < 0:
    parser.error('--model_config_file_poll_wait_seconds must be 0 or more')
  if args.model_config_file_poll_wait_seconds and not args.model_config_file:
    parser.error('--model_config_file_poll_wait_seconds needs --model_config_file')
  if args.batching_parameters_file and not args.enable_batching:
    parser.error('--batching_parameters_file needs --enable_batching')
  try:
    options_from_args(args)
  except ValueError as error:
    parser.error(str(error))
  return args


def options_from_args(args: argparse.Namespace) -> ServerOptions:
  return ServerOptions(**{field.name: getattr(args, field.name)
                          for field in dataclasses.fields(ServerOptions)})


def server_from_args(args: argparse.Namespace, log=print) -> ModelServer:
  sources = []
  if not args.model_config_file:
    sources = [ModelSource(args.model_name, os.path.abspath(args.model_base_path)
                           if '://' not in args.model_base_path else args.model_base_path)]
  batching = None
  if args.enable_batching:
    batching = (config_files.read_batching_parameters(args.batching_parameters_file)
                if args.batching_parameters_file else BatchingParameters())
    log(f'Batching: {batching}')
  metrics_path = None
  if args.monitoring_config_file:
    metrics_path = monitoring.read_monitoring_config(args.monitoring_config_file)
  return ModelServer(sources, options_from_args(args), batching, log,
                     config_file=args.model_config_file,
                     config_poll_seconds=args.model_config_file_poll_wait_seconds,
                     allow_unavailable_labels=args.allow_version_labels_for_unavailable_models,
                     metrics_path=metrics_path, process=args.supervised_as)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  log = lambda message: print(message, flush=True)  # noqa: E731
  if args.server_processes > 1 and not args.supervised_as:
    if argv is None:  # the command line: the supervisor, without TensorFlow's memory
      processes.exec_supervisor(sys.argv[1:], args.server_processes, args.host, args.port,
                                args.rest_api_port)
    return processes.supervise(argv, args.server_processes, args.host, args.port,
                               args.rest_api_port, log)
  try:
    server = server_from_args(args, log).start()
  except (OSError, ValueError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  stopped = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: stopped.set())
  stopped.wait()
  log('Stopping')
  server.stop()
  return 0
