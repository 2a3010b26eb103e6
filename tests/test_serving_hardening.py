"""The server under hostile or heavy use: every request is bounded, HTTP framing cannot be
smuggled, the REST port takes bursts of connections, and start-up and --help say what to do.

These tests need the HTTP and gRPC layers, not a recommender, so they serve a tiny SavedModel
written in a second (tests/tiny_model.py), on a real server on loopback.
"""
import re
import socket
import threading
import time

import pytest
import requests

from serving.client import GrpcClient, ServingClientError
from serving.config_files import BatchingParameters, ModelSource
from serving.server import ModelServer, ServerOptions, parse_args, server_from_args
from serving.server import main as server_main
from tests.serving_endpoints import free_port
from tests.tiny_model import K

RESPONSE_LIMIT = 100_000  # bytes: ~600 a row, so 100 rows fit and 500 do not
TIMEOUT_MS = 1000  # the server's --rest_api_timeout_in_ms, short so a stalled body is quick


def _options(**overrides) -> ServerOptions:
  return ServerOptions(**{'host': '127.0.0.1', 'port': free_port(), 'rest_api_port': 0,
                          'file_system_poll_wait_seconds': 0.2, **overrides})


@pytest.fixture(scope='module')
def server(tiny_base_path):
  """Default limits but a small --max_response_bytes and a 1 s --rest_api_timeout_in_ms."""
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))],
                       _options(max_response_bytes=RESPONSE_LIMIT,
                                rest_api_timeout_in_ms=TIMEOUT_MS),
                       log=lambda message: None).start()
  yield server
  server.stop()


def _url(server, path=':predict') -> str:
  return f'http://127.0.0.1:{server.rest_port}/v1/models/tiny{path}'


def _grpc(server) -> GrpcClient:
  return GrpcClient(f'127.0.0.1:{server.grpc_port}', 'tiny')


def _rows_seen(server) -> int:
  response = requests.post(_url(server), json={'signature_name': 'rows_seen', 'inputs': {}},
                           timeout=10)
  return response.json()['outputs']


def _users(count: int):
  return [str(1 + i % 100) for i in range(count)]


# --- 1. every predict request is bounded: rows before any work, and the response ---------------

def test_a_request_over_max_request_rows_is_refused_over_rest_before_the_model_runs(server):
  before = _rows_seen(server)
  response = requests.post(_url(server), json={'instances': _users(100_000)}, timeout=30)
  assert response.status_code == 400
  error = response.json()['error']
  assert '100000 rows' in error and 'limit of 1000' in error and '--max_request_rows' in error
  assert _rows_seen(server) == before
  assert requests.post(_url(server), json={'instances': _users(3)}, timeout=10).status_code == 200


def test_a_request_over_max_request_rows_is_refused_over_grpc_before_the_model_runs(server):
  before = _rows_seen(server)
  with pytest.raises(ServingClientError) as raised:
    _grpc(server).predict({'user_id': _users(1001)})
  assert raised.value.code == 'INVALID_ARGUMENT'
  assert '1001 rows' in raised.value.message and '--max_request_rows' in raised.value.message
  assert _rows_seen(server) == before
  assert _grpc(server).predict({'user_id': _users(50)})['movie_ids'].shape == (50, K)


def _histories(rows: int, length: int):
  return [[str(1 + i % 100) for i in range(length)] for _ in range(rows)]


def test_a_history_over_max_values_per_row_is_refused_over_rest_before_the_model_runs(server):
  before = _rows_seen(server)
  response = requests.post(_url(server), json={'signature_name': 'history',
                                               'instances': _histories(2, 1001)}, timeout=30)
  assert response.status_code == 400
  error = response.json()['error']
  assert 'input context_movie_ids has 1001 values per row' in error
  assert 'limit of 1000' in error and '--max_values_per_row' in error
  ragged = _histories(1, 3) + _histories(1, 5000)  # one long row among short ones
  response = requests.post(_url(server), json={'signature_name': 'history',
                                               'instances': ragged}, timeout=30)
  assert response.status_code == 400 and 'ragged' in response.json()['error']
  assert _rows_seen(server) == before
  answered = requests.post(_url(server), json={'signature_name': 'history',
                                               'instances': _histories(2, 1000)}, timeout=30)
  assert answered.status_code == 200 and answered.json()['predictions'] == [1000, 1000]


def test_a_history_over_max_values_per_row_is_refused_over_grpc_before_the_model_runs(server):
  before = _rows_seen(server)
  with pytest.raises(ServingClientError) as raised:
    _grpc(server).predict({'context_movie_ids': _histories(1, 5000)}, 'history')
  assert raised.value.code == 'INVALID_ARGUMENT'
  assert ('input context_movie_ids has 5000 values per row, over the limit of 1000 values per '
          'row (--max_values_per_row)') in raised.value.message
  assert _rows_seen(server) == before
  answer = _grpc(server).predict({'context_movie_ids': _histories(2, 1000)}, 'history')
  assert list(answer['history_length']) == [1000, 1000]


def _claim_shape(client: GrpcClient, dims):
  """A one-value user_id TensorProto that claims the shape dims."""
  request = client.predict_request({'user_id': ['1']})
  shape = request.inputs['user_id'].tensor_shape
  del shape.dim[:]
  for size in dims:
    shape.dim.add(size=size)
  return request


@pytest.mark.parametrize('dims,flag', [([10**9], '--max_request_rows'),
                                       ([1, 10**9], '--max_values_per_row')])
def test_a_tensor_proto_claiming_a_huge_shape_is_refused_before_it_is_built(server, dims, flag):
  """TensorFlow fills a short TensorProto up to its shape: a 30-byte message claiming a
  billion strings would allocate gigabytes."""
  client = _grpc(server)
  with pytest.raises(ServingClientError) as raised:
    client.predict_response(_claim_shape(client, dims))
  assert raised.value.code == 'INVALID_ARGUMENT' and flag in raised.value.message


def test_a_claimed_shape_within_raised_row_limits_is_still_bounded_by_the_message_size(
    tiny_base_path):
  """With the values per row raised, a claim is still refused when it has more elements than
  a request may have bytes."""
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))],
                       _options(max_values_per_row=10**9), log=lambda message: None).start()
  try:
    client = _grpc(server)
    with pytest.raises(ServingClientError) as raised:
      client.predict_response(_claim_shape(client, [1, 10**9]))
    assert raised.value.code == 'INVALID_ARGUMENT'
    assert '--grpc_max_message_bytes' in raised.value.message
  finally:
    server.stop()


def test_a_response_over_max_response_bytes_is_refused_over_rest_and_grpc(server):
  response = requests.post(_url(server), json={'instances': _users(500)}, timeout=30)
  assert response.status_code == 400
  assert f'limit of {RESPONSE_LIMIT} bytes (--max_response_bytes)' in response.json()['error']
  with pytest.raises(ServingClientError) as raised:
    _grpc(server).predict({'user_id': _users(500)})
  assert raised.value.code == 'INVALID_ARGUMENT'
  assert '--max_response_bytes' in raised.value.message
  answered = requests.post(_url(server), json={'instances': _users(100)}, timeout=30)
  assert answered.status_code == 200 and len(answered.json()['predictions']) == 100


# --- 2. the REST port takes bursts of connections ----------------------------------------------

def test_rest_port_queues_a_burst_of_connections_before_it_accepts_them(tiny_base_path):
  """A server that is not accepting yet (never started) still completes 64 connections: the
  listen backlog was 5, and under 32 clients connections beyond it were reset."""
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))], _options(),
                       log=lambda message: None)
  connections = []
  try:
    for _ in range(64):
      connections.append(socket.create_connection(('127.0.0.1', server.rest_port), timeout=1))
  finally:
    for connection in connections:
      connection.close()
    server.stop()
  assert len(connections) == 64


def test_connections_past_rest_api_num_threads_wait_for_a_free_thread(tiny_base_path):
  """Two idle keep-alive connections hold both threads: a third is accepted into the backlog
  but answered only once one of them closes (threads, and so memory, stay bounded)."""
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))],
                       _options(rest_api_num_threads=2), log=lambda message: None).start()
  try:
    idle = [socket.create_connection(('127.0.0.1', server.rest_port), timeout=5)
            for _ in range(2)]
    time.sleep(0.3)  # both accepted, each thread waiting for its first request
    with pytest.raises(requests.exceptions.ReadTimeout):
      requests.get(_url(server, ''), timeout=1)
    idle[0].close()
    assert requests.get(_url(server, ''), timeout=5).status_code == 200
    idle[1].close()
  finally:
    server.stop()


def test_32_concurrent_rest_clients_on_fresh_connections_all_succeed(server):
  clients, requests_each = 32, 40
  failures, answered = [], []

  def client(number: int):
    for request in range(requests_each):
      try:
        response = requests.post(_url(server), json={'instances': [str(number), str(request)]},
                                 timeout=20)  # requests.post: a new connection every time
        assert response.status_code == 200, response.text
        assert len(response.json()['predictions']) == 2
        answered.append(1)
      except Exception as error:  # noqa: BLE001  (collected: the test asserts there are none)
        failures.append(repr(error))

  threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
  started = time.monotonic()
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=120)
  assert failures == []
  assert len(answered) == clients * requests_each, f'{time.monotonic() - started:.0f} s'


# --- 3. HTTP framing: a body is never a request, bad framing is a 4xx and a closed connection ---

def _exchange(server, payload: bytes, timeout: float = 5) -> bytes:
  """Sends raw bytes to the REST port; everything received until the server closes."""
  with socket.create_connection(('127.0.0.1', server.rest_port), timeout=timeout) as raw:
    raw.sendall(payload)
    received = b''
    while True:
      chunk = raw.recv(65536)  # socket.timeout fails the test: the server did not close
      if not chunk:
        return received
      received += chunk


def _responses(answer: bytes):
  """[(status, headers, body)] of the HTTP responses in a byte stream, by their Content-Length."""
  responses = []
  while answer:
    head, answer = answer.split(b'\r\n\r\n', 1)
    length = int(re.search(rb'\r\nContent-Length: (\d+)', head)[1])
    responses.append((int(head.split()[1]), head, answer[:length]))
    answer = answer[length:]
  return responses


def _statuses(answer: bytes):
  return [status for status, _, _ in _responses(answer)]


def _request(method: str, path: str, body: bytes = b'', headers: str = '') -> bytes:
  length = f'Content-Length: {len(body)}\r\n' if body else ''
  return (f'{method} /v1/models/tiny{path} HTTP/1.1\r\nHost: test\r\n{length}{headers}'
          '\r\n').encode() + body


@pytest.mark.parametrize('method', ['PUT', 'DELETE', 'PATCH', 'GET'])
def test_a_request_body_is_never_read_as_the_next_request(server, method):
  smuggled = _request('GET', '')  # would answer a model status if it were read as a request
  follow_up = _request('GET', '/metadata', headers='Connection: close\r\n')
  answer = _exchange(server, _request(method, '', smuggled) + follow_up)
  (first, _, _), (second, _, body) = _responses(answer)
  assert (first, second) == (200 if method == 'GET' else 404, 200)
  assert b'signature_def' in body  # the answer to the follow-up: metadata


@pytest.mark.parametrize('headers', [
    'Content-Length: -1\r\n', 'Content-Length: abc\r\n', 'Content-Length: +19\r\n',
    'Content-Length: 19\r\nContent-Length: 5\r\n', 'Transfer-Encoding: chunked\r\n',
    'Transfer-Encoding: gzip, chunked\r\nContent-Length: 19\r\n',
    'Content-Length : 19\r\n', 'X-Folded: a\r\n Content-Length: 19\r\n',
], ids=['negative', 'not a number', 'signed', 'two lengths', 'chunked', 'chunked after gzip',
        'space before the colon', 'folded line'])
def test_ambiguous_body_framing_is_a_400_and_a_closed_connection(server, headers):
  body = b'{"instances": ["1"]}'[:19]
  answer = _exchange(server, _request('POST', ':predict', headers=headers) + body)
  [(status, head, body)] = _responses(answer)
  assert status == 400 and b'Connection: close' in head
  assert re.search(rb'Content-Length|Transfer-Encoding|header line', body)


@pytest.mark.parametrize('method,suffix', [('GET', ''), ('GET', '/metadata'),
                                           ('POST', ':predict')])
def test_a_version_number_of_5000_digits_is_a_400(server, method, suffix):
  answer = _exchange(server, _request(method, '/versions/' + '9' * 5000 + suffix,
                                      b'{"instances": ["1"]}' if method == 'POST' else b'',
                                      headers='Connection: close\r\n'))
  assert _statuses(answer) == [400] and b'out of range' in answer


def test_a_body_that_stops_midway_is_a_408_then_a_close_and_no_traceback(server, capfd):
  headers = 'Content-Length: 100\r\n'
  # Only the server's deadline answers 408: the body never completes.
  answer = _exchange(server, _request('POST', ':predict', headers=headers) + b'{"instan')
  assert _statuses(answer) == [408] and b'--rest_api_timeout_in_ms' in answer
  with socket.create_connection(('127.0.0.1', server.rest_port), timeout=5) as raw:
    raw.sendall(_request('POST', ':predict', headers=headers) + b'{"instan')  # then hang up
  time.sleep(2 * TIMEOUT_MS / 1000)  # both handlers are done
  assert requests.get(_url(server, ''), timeout=10).status_code == 200
  assert 'Traceback' not in capfd.readouterr().err


# --- 4. start-up and --help say what the server does and what to do ---------------------------

def test_help_lists_each_flag_once_with_its_default(capsys):
  with pytest.raises(SystemExit):
    parse_args(['--help'])
  help_text = capsys.readouterr().out
  headings = [line.split('  ')[0] for line in re.findall(r'^  (--.*)', help_text, re.M)]
  assert all(', --' not in heading for heading in headings), headings  # one spelling each
  listed = [heading.split()[0] for heading in headings]
  assert len(listed) == len(set(listed)) and '--port' in listed
  for flag, default in [('--port', 8500), ('--rest_api_port', 8501), ('--max_request_rows', 1000),
                        ('--max_values_per_row', 1000), ('--rest_api_listen_backlog', 4096),
                        ('--host', '0.0.0.0')]:
    entry = help_text.split(f'\n  {flag} ')[1].split('\n  --')[0]
    assert f'(default: {default})' in ' '.join(entry.split()), entry
  assert '0.0.0.0 is every network interface' in ' '.join(help_text.split())
  assert parse_args(['--model-base-path', '/m', '--max-request-rows', '5']).max_request_rows == 5
  args = parse_args(['--model-base-path', '/m', '--max-values-per-row', '5'])
  assert args.max_values_per_row == 5


@pytest.mark.parametrize('folder,says', [('missing', 'does not exist yet'),
                                         ('empty', 'holds no version folder')])
def test_starting_without_a_pushed_model_says_what_is_missing_and_how_to_push_one(
    tmp_path, folder, says):
  base_path = tmp_path / folder
  if folder == 'empty':
    base_path.mkdir()
  lines = []
  server = ModelServer([ModelSource('retrieval', str(base_path))], _options(),
                       log=lines.append).start()
  server.stop()
  startup = '\n'.join(lines)
  assert f'{base_path} {says}' in startup and 'make demo' in startup, startup
  assert 'python -m pipeline run' in startup


# --- TF Serving's gRPC flags -------------------------------------------------------------------

def test_grpc_channel_arguments_reach_the_grpc_server(tiny_base_path):
  """A receive limit of 300 bytes set through --grpc_channel_arguments (ints as ints, as TF
  Serving passes them) wins over the server's own: a bigger request is refused by gRPC."""
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))], _options(
      grpc_channel_arguments='grpc.max_receive_message_length=300,grpc.primary_user_agent=t'),
                       log=lambda message: None).start()
  try:
    client = _grpc(server)
    assert client.predict({'user_id': ['1']})['movie_ids'].shape == (1, K)
    with pytest.raises(ServingClientError) as raised:
      client.predict({'user_id': _users(100)})
    assert raised.value.code == 'RESOURCE_EXHAUSTED'
  finally:
    server.stop()


@pytest.mark.parametrize('threads', [1, 2])
def test_grpc_max_threads_bounds_the_grpc_calls_handled_at_once(tiny_base_path, threads):
  """Batching waits for a batch of two. With two gRPC threads two concurrent calls fill one
  batch at once: with a 60 s batch timeout both are answered (within the 10 s the test waits)
  only if they were batched together. With one thread the second call is not taken until the
  first's batch has timed out alone (0.5 s), and then waits out its own timeout: at least 1 s,
  however busy the machine (a lower bound, which slowness only lengthens)."""
  timeout_micros = 500_000 if threads == 1 else 60_000_000
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))],
                       _options(grpc_max_threads=threads),
                       BatchingParameters(max_batch_size=2, batch_timeout_micros=timeout_micros),
                       log=lambda message: None).start()
  try:
    clients = [_grpc(server) for _ in range(2)]

    def call_both():
      """Both clients' answers to a call each, made at once (waiting up to 10 s for them)."""
      answers = []
      calls = [threading.Thread(target=lambda client=client: answers.append(
          client.predict({'user_id': ['1']}))) for client in clients]
      for call in calls:
        call.start()
      for call in calls:
        call.join(timeout=10)
      return answers

    call_both()  # connected, and the model's first calls made, before the clock
    started = time.monotonic()
    answers = call_both()
    elapsed = time.monotonic() - started
    assert len(answers) == 2  # with two threads: one batch, long before its timeout
    if threads == 1:
      assert elapsed >= 0.95
  finally:
    server.stop()


def test_grpc_is_served_on_a_unix_socket_too(tiny_base_path, tmp_path):
  socket_path = tmp_path / 'grpc.sock'
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))],
                       _options(grpc_socket_path=str(socket_path)),
                       log=lambda message: None).start()
  try:
    client = GrpcClient(f'unix:{socket_path}', 'tiny')
    assert client.predict({'user_id': ['1']})['movie_ids'].shape == (1, K)
    assert _grpc(server).predict({'user_id': ['1']})['movie_ids'].shape == (1, K)
  finally:
    server.stop()


def test_malformed_grpc_channel_arguments_are_refused_naming_the_item(tiny_base_path, capsys):
  with pytest.raises(SystemExit):
    parse_args(['--model_base_path', str(tiny_base_path),
                '--grpc_channel_arguments', 'grpc.keepalive_time_ms=10,grpc.oops'])
  assert "expected key=value, got 'grpc.oops'" in capsys.readouterr().err


# --- monitoring ---------------------------------------------------------------------------------

def test_a_bad_monitoring_config_stops_start_up_naming_the_file_and_position(tmp_path, capsys):
  """As TF Serving words a text proto it cannot parse; the counting itself is checked in the
  contract suite (tests/test_serving_contract.py), against a real TF Serving too."""
  config = tmp_path / 'monitoring.config'
  config.write_text('prometheus_config {\n  enable: yes\n}\n')
  assert server_main(['--model_base_path', str(tmp_path), '--rest_api_port', '0', '--port',
                      '0', '--monitoring_config_file', str(config)]) == 2
  error = capsys.readouterr().err
  assert f'{config}: Error parsing text-format tensorflow.serving.MonitoringConfig: 2:11' in error


def test_the_metrics_page_is_served_at_the_configured_path_only(tiny_base_path, tmp_path):
  """Any method at that path (as TF Serving); without a config no page (TF Serving's REST
  answers 404 outside /v1/)."""
  config = tmp_path / 'monitoring.config'
  config.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
  args = parse_args(['--model_base_path', str(tiny_base_path), '--model_name', 'tiny',
                     '--host', '127.0.0.1', '--port', '0', '--rest_api_port', '0',
                     '--monitoring_config_file', str(config)])
  server = server_from_args(args, log=lambda message: None).start()
  try:
    base = f'http://127.0.0.1:{server.rest_port}'
    for method in ('GET', 'POST'):
      page = requests.request(method, f'{base}/metrics', timeout=30)
      assert page.status_code == 200 and '# TYPE :tensorflow:serving:request_count' in page.text
    assert requests.get(f'{base}/monitoring/prometheus/metrics', timeout=30).status_code == 404
  finally:
    server.stop()


def test_requests_for_ever_new_model_names_cannot_grow_the_metrics_without_bound(
    tiny_base_path, tmp_path):
  """Each request for an unknown model is counted under the name it asked for (as TF
  Serving): past MAX_MODEL_NAMES names they share one counter, and names are cut."""
  from serving import monitoring
  server = ModelServer([ModelSource('tiny', str(tiny_base_path))], _options(),
                       log=lambda message: None, metrics_path='/metrics').start()
  try:
    base = f'http://127.0.0.1:{server.rest_port}'
    with requests.Session() as session:
      for index in range(monitoring.MAX_MODEL_NAMES + 5):
        name = f'{index:05d}' + 'x' * 400
        assert session.get(f'{base}/v1/models/{name}', timeout=30).status_code == 404
      page = session.get(f'{base}/metrics', timeout=30).text
  finally:
    server.stop()
  counts = [line for line in page.splitlines()
            if line.startswith(':tensorflow:serving:request_count{')]
  assert len(counts) == monitoring.MAX_MODEL_NAMES + 1  # and the one for the rest
  assert max(len(line) for line in counts) < monitoring.MAX_NAME_CHARS + 100
  assert (f':tensorflow:serving:request_count{{model_name="{monitoring.OTHER_MODELS}",'
          'status="NOT_FOUND"} 5') in counts
