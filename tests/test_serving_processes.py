"""`python -m serving --server_processes 2`: two processes on the same ports, as started from
the command line (a supervisor and its children, serving/processes.py), on loopback.

The tiny model's rows_seen signature (tests/tiny_model.py) answers how many rows the process
that answered has run: each process has its own count, so the answers tell whether both
processes served.
"""
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
import psutil
import pytest
import requests
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving.client import GrpcClient
from tests.serving_endpoints import free_port

PREDICTS = 20  # over REST and over gRPC each, every one on a new connection
START_SECONDS = 120


class _Server:
  """`python -m serving --server_processes 2` on two free ports. Its output (the supervisor's
  and the children's, one pipe) is read as it comes, by a thread."""

  def __init__(self, base_path, *flags, wait: bool = True):
    """wait: until both children serve; otherwise until both have started."""
    self.grpc_port, self.rest_port = free_port(), free_port()
    self.process = subprocess.Popen(
        [sys.executable, '-m', 'serving', '--model_name', 'tiny', '--model_base_path',
         str(base_path), '--host', '127.0.0.1', '--port', str(self.grpc_port),
         '--rest_api_port', str(self.rest_port), '--server_processes', '2', *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    self._lines, self._new_line = [], threading.Condition()
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()
    self._wait_for(lambda: len(self.children()) == 2 or self.process.poll() is not None)
    if wait:
      # Each child logs this once its models are loaded and its watchers started; requests
      # sent before might all reach the child that was ready first.
      self._wait_for(lambda: all(f'[process {i}/2] gRPC on' in self.output() for i in (1, 2)))

  def _read(self):
    for line in self.process.stdout:  # until every process holding the pipe has exited
      with self._new_line:
        self._lines.append(line)
        self._new_line.notify_all()

  def output(self) -> str:
    with self._new_line:
      return ''.join(self._lines)

  def _wait_for(self, condition):
    deadline = time.monotonic() + START_SECONDS
    with self._new_line:
      while not condition():
        assert self.process.poll() is None, self.output()
        assert time.monotonic() < deadline, f'not started in {START_SECONDS} s: {self.output()}'
        self._new_line.wait(0.1)

  def url(self, path=':predict') -> str:
    return f'http://127.0.0.1:{self.rest_port}/v1/models/tiny{path}'

  def children(self):
    return psutil.Process(self.process.pid).children()

  def wait(self):
    """(exit code, all the output) once the supervisor and every child have exited."""
    code = self.process.wait(timeout=60)
    self._reader.join(timeout=60)
    return code, self.output()

  def stop(self):
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)
    return self.wait()


@pytest.fixture(scope='module')
def two_processes(tiny_base_path, tmp_path_factory):
  monitoring = tmp_path_factory.mktemp('config') / 'monitoring.config'
  monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
  server = _Server(tiny_base_path, '--monitoring_config_file', str(monitoring))
  children = server.children()
  # The supervisor replaced itself with one that holds no TensorFlow (same pid).
  supervisor = psutil.Process(server.process.pid)
  assert 'serving.processes' in supervisor.cmdline()
  assert supervisor.memory_info().rss < 100 * 2**20 < min(c.memory_info().rss for c in children)
  yield server
  code, output = server.stop()
  # SIGTERM to the supervisor stops both children and the server exits cleanly.
  assert code == 0, output
  assert not [child for child in children if child.is_running()
              and child.status() != psutil.STATUS_ZOMBIE]


def _rows_seen(server) -> int:
  response = requests.post(server.url(), json={'signature_name': 'rows_seen', 'inputs': {}},
                           timeout=30)
  return response.json()['outputs']


def test_both_processes_answer_on_the_same_ports_and_the_metrics_count_both(two_processes):
  server = two_processes
  for user in range(PREDICTS):  # a new connection each
    response = requests.post(server.url(), json={'instances': [str(user)]}, timeout=30)
    assert response.status_code == 200, response.text
  for user in range(PREDICTS):
    client = GrpcClient(f'127.0.0.1:{server.grpc_port}', 'tiny')
    assert client.predict({'user_id': [str(user)]})['movie_ids'].shape == (1, 10)
    client.close()
  asked = 40
  seen = {_rows_seen(server) for _ in range(asked)}
  # Each process counts the rows it ran: two counts adding up to every row, or (one chance in
  # a few) an even share that reads as one value.
  assert (len(seen) == 2 and sum(seen) == 2 * PREDICTS) or seen == {PREDICTS}, seen

  time.sleep(2.5)  # past the children's next publication of their counters
  pages = [requests.get(f'http://127.0.0.1:{server.rest_port}/metrics', timeout=30).text
           for _ in range(10)]
  counted = {int(re.search(r':tensorflow:serving:request_count\{model_name="tiny",'
                           r'status="OK"\} (\d+)', page)[1]) for page in pages}
  # Every page, whichever process wrote it, counts every request both processes served.
  assert counted == {2 * PREDICTS + asked}, counted


def test_a_reload_over_grpc_is_refused_as_it_would_reach_one_process(two_processes):
  with grpc.insecure_channel(f'127.0.0.1:{two_processes.grpc_port}') as channel:
    with pytest.raises(grpc.RpcError) as error:
      model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
          model_management_pb2.ReloadConfigRequest(), timeout=30)
  assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
  assert '2 processes (--server_processes)' in error.value.details()
  assert '--model_config_file' in error.value.details()


def test_a_process_that_dies_stops_the_server_with_its_exit_code(tiny_base_path):
  server = _Server(tiny_base_path, wait=False)  # dying while it starts counts the same
  first, second = server.children()
  first.kill()
  code, output = server.wait()
  assert code == 128 + signal.SIGKILL, output
  assert f'server process 1/2 (pid {first.pid}) exited with code -9' in output
  assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE


def test_the_processes_stop_when_the_supervisor_is_killed(tiny_base_path):
  # Killed before the children serve: they are orphans before they start watching for it.
  server = _Server(tiny_base_path, wait=False)
  children = server.children()
  server.process.kill()
  _, alive = psutil.wait_procs(children, timeout=30)
  assert not alive
  _, output = server.wait()  # the children wrote to the same pipe
  assert output.count(f'the supervisor (pid {server.process.pid}) is gone: stopping') == 2


@pytest.mark.parametrize('flags, message', [
    (['--server_processes', '0'], '--server_processes must be over 0'),
    (['--server_processes', '2', '--grpc_socket_path', '/tmp/x.sock'],
     '--grpc_socket_path serves one process')])
def test_process_flags_that_cannot_work_are_refused(tiny_base_path, capsys, flags, message):
  from serving import server
  with pytest.raises(SystemExit):
    server.parse_args(['--model_base_path', str(tiny_base_path), *flags])
  assert message in capsys.readouterr().err
