"""The local model server: TF Serving's REST and gRPC APIs over pushed SavedModel folders.

    python -m serving --model_name retrieval --model_base_path <workdir>/serving_models/retrieval
    python -m serving --model_config_file models.config [--enable_batching
        --batching_parameters_file batching_parameters.txt]

Flags are TF Serving's (dashes or underscores), so the same command line and configuration
files work with `tensorflow_model_server`. Ports: 8500 gRPC, 8501 REST.
"""
import argparse
import os
import signal
import sys
import threading
from typing import List, Optional, Sequence

from serving import config_files
from serving.api import ServingApi
from serving.config_files import BatchingParameters, ModelSource
from serving.grpc_service import DEFAULT_MAX_MESSAGE_BYTES, make_grpc_server
from serving.models import ModelManager
from serving.rest import DEFAULT_MAX_BODY_BYTES, RestServer


class ModelServer:
  """Loads the models, then serves gRPC and REST until stop()."""

  def __init__(self, sources: Sequence[ModelSource], host: str = '0.0.0.0', grpc_port: int = 8500,
               rest_port: int = 8501, batching: Optional[BatchingParameters] = None,
               poll_seconds: float = 1.0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, verbose: bool = False,
               log=print):
    self.manager = ModelManager(sources, batching, poll_seconds, log)
    self.api = ServingApi(self.manager)
    self._log = log
    self._grpc = make_grpc_server(self.api, f'{host}:{grpc_port}',
                                  max_message_bytes=max_message_bytes)
    try:
      self._rest = RestServer((host, rest_port), self.api, max_body_bytes, verbose)
    except OSError as error:
      raise OSError(f'cannot listen on {host}:{rest_port} for REST: {error}') from None
    self.grpc_port, self.rest_port = grpc_port, self._rest.server_address[1]
    self._rest_thread = threading.Thread(target=self._rest.serve_forever, daemon=True,
                                         name='rest')

  def start(self) -> 'ModelServer':
    self.manager.start()
    for name, model in self.manager.models.items():
      try:
        versions = [status.version for status in model.status() if status.state == 'AVAILABLE']
      except Exception:  # noqa: BLE001  (no versions yet: it is watched, and loads when pushed)
        versions = []
      self._log(f'Model {name}: serving version(s) {versions or "none yet"} from '
                f'{model.source.base_path}')
    self._grpc.start()
    self._rest_thread.start()
    self._log(f'gRPC on port {self.grpc_port}, REST on port {self.rest_port} '
              f'(e.g. GET http://localhost:{self.rest_port}/v1/models/'
              f'{next(iter(self.manager.models))})')
    return self

  def stop(self) -> None:
    self._rest.shutdown()
    self._rest.server_close()
    self._grpc.stop(grace=2).wait()
    self.manager.stop()


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
  """A TF Serving flag, spelled with underscores (as TF Serving) or dashes."""
  parser.add_argument('--' + name, '--' + name.replace('_', '-'), dest=name, **kwargs)


def _boolean(text: str) -> bool:
  if text.lower() not in ('true', 'false', '1', '0'):
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')
  return text.lower() in ('true', '1')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='python -m serving', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  _flag(parser, 'model_name', default='retrieval', help='with --model_base_path')
  _flag(parser, 'model_base_path', help='folder of numbered version folders (the Pusher\'s)')
  _flag(parser, 'model_config_file', help='a models.config (several models, version policies)')
  _flag(parser, 'port', type=int, default=8500, help='gRPC port')
  _flag(parser, 'rest_api_port', type=int, default=8501, help='REST port')
  _flag(parser, 'host', default='0.0.0.0', help='address to listen on (ours; 127.0.0.1: local)')
  _flag(parser, 'enable_batching', nargs='?', const=True, default=False, type=_boolean,
        help='batch concurrent requests (also --enable_batching=true, as TF Serving)')
  _flag(parser, 'batching_parameters_file', help='TF Serving batching parameters (text proto)')
  _flag(parser, 'file_system_poll_wait_seconds', type=float, default=1.0)
  _flag(parser, 'model_config_file_poll_wait_seconds', type=float, default=0,
        help='accepted for TF Serving compatibility; this server reads the config file once')
  _flag(parser, 'rest_api_max_body_bytes', type=int, default=DEFAULT_MAX_BODY_BYTES)
  _flag(parser, 'grpc_max_message_bytes', type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
  _flag(parser, 'verbose', action='store_true', help='log every REST request')
  args = parser.parse_args(argv)
  if bool(args.model_base_path) == bool(args.model_config_file):
    parser.error('give either --model_base_path (and --model_name) or --model_config_file')
  if args.batching_parameters_file and not args.enable_batching:
    parser.error('--batching_parameters_file needs --enable_batching')
  return args


def server_from_args(args: argparse.Namespace, log=print) -> ModelServer:
  if args.model_config_file:
    sources = config_files.read_models_config(args.model_config_file)
  else:
    sources = [ModelSource(args.model_name, os.path.abspath(args.model_base_path)
                           if '://' not in args.model_base_path else args.model_base_path)]
  batching = None
  if args.enable_batching:
    batching = (config_files.read_batching_parameters(args.batching_parameters_file)
                if args.batching_parameters_file else BatchingParameters())
    log(f'Batching: {batching}')
  return ModelServer(sources, args.host, args.port, args.rest_api_port, batching,
                     args.file_system_poll_wait_seconds, args.rest_api_max_body_bytes,
                     args.grpc_max_message_bytes, args.verbose, log)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  log = lambda message: print(message, flush=True)  # noqa: E731
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
