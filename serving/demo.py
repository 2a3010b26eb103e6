"""make demo's last step: serve the pushed model, ask it once over REST and once over gRPC, stop.

Runs the same commands a user would (`python -m serving`, then the client), printing each.
"""
import argparse
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import requests

from serving import client
from serving.recommendations import DEFAULT_MODEL_NAME


def _port_free(port: int) -> bool:
  with socket.socket() as probe:
    try:
      probe.bind(('127.0.0.1', port))
    except OSError:
      return False
  return True


def _pick_port(preferred: int) -> int:
  if _port_free(preferred):
    return preferred
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  print(f'(port {preferred} is in use: using {port})')
  return port


def _wait_until_available(server: subprocess.Popen, url: str, timeout: float) -> bool:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and server.poll() is None:
    try:
      statuses = requests.get(url, timeout=2).json().get('model_version_status', [])
      if any(status['state'] == 'AVAILABLE' for status in statuses):
        return True
    except (requests.ConnectionError, requests.Timeout, ValueError):
      pass
    time.sleep(0.5)
  return False


def start_server(model_base_path: str, model_name: str, grpc_port: int, rest_port: int,
                 extra_flags: Sequence[str] = (), timeout: float = 180,
                 echo: bool = False, **popen_kwargs) -> subprocess.Popen:
  """`python -m serving` on 127.0.0.1 in a child process, returned once the model is
  AVAILABLE; RuntimeError if it is not within timeout seconds (the child is stopped)."""
  command = [sys.executable, '-m', 'serving', '--model_name', model_name,
             '--model_base_path', model_base_path, '--host', '127.0.0.1',
             '--port', str(grpc_port), '--rest_api_port', str(rest_port), *extra_flags]
  if echo:
    print(f'\n$ {shlex.join(command)} &', flush=True)
  server = subprocess.Popen(command, **popen_kwargs)
  if not _wait_until_available(server, f'http://127.0.0.1:{rest_port}/v1/models/{model_name}',
                               timeout):
    stop_server(server)
    raise RuntimeError(f'the server did not serve {model_name} within {timeout:.0f} s '
                       f'(exit code {server.returncode})')
  return server


def stop_server(server: subprocess.Popen) -> None:
  """SIGTERM, as a container runtime would; killed if it does not stop within 30 s."""
  server.send_signal(signal.SIGTERM)
  try:
    server.wait(timeout=30)
  except subprocess.TimeoutExpired:
    server.kill()
    server.wait()


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m serving.demo', description=__doc__)
  parser.add_argument('--model-base-path', required=True)
  parser.add_argument('--model-name', default=DEFAULT_MODEL_NAME)
  parser.add_argument('--user', default='1', help='the user asked for (user-based models)')
  parser.add_argument('--history', default='1,2,3',
                      help='the watch history asked for (sequential models)')
  parser.add_argument('-k', type=int, default=5)
  parser.add_argument('--grpc-port', type=int, default=8500)
  parser.add_argument('--rest-port', type=int, default=8501)
  parser.add_argument('--timeout', type=float, default=180, help='seconds to wait for the model')
  args = parser.parse_args(argv)

  grpc_port, rest_port = _pick_port(args.grpc_port), _pick_port(args.rest_port)
  try:
    server = start_server(args.model_base_path, args.model_name, grpc_port, rest_port,
                          timeout=args.timeout, echo=True)
  except RuntimeError as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  try:
    status_url = f'http://127.0.0.1:{rest_port}/v1/models/{args.model_name}'
    print(f'\n$ curl {status_url}\n{requests.get(status_url, timeout=10).text}')
    exit_code = 0
    for transport, port_flag in (('--rest', f'--rest-port={rest_port}'),
                                 ('--grpc', f'--grpc-port={grpc_port}')):
      client_args = ['recommend', '--user', args.user, '--history', args.history, '-k',
                     str(args.k), transport, port_flag,
                     '--model', args.model_name]
      print(f'\n$ python -m serving.client {shlex.join(client_args)}', flush=True)
      exit_code = exit_code or client.main(client_args)
    return exit_code
  finally:
    stop_server(server)
    print('\nServer stopped. To keep it running: make serve', flush=True)


if __name__ == '__main__':
  sys.exit(main())
