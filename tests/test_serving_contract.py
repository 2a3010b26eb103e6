"""TF Serving's client-facing contract, against our server on loopback (and a real TF Serving
when TFSERVING_REST_URL / TFSERVING_GRPC_TARGET are set: see tests/serving_endpoints.py).

REST goes through an HTTP client, gRPC through the tensorflow-serving-api stubs. The served
model is the one the pipeline test run pushed, and for Classify, Regress, MultiInference and TF
Serving's input rules a half-plus-two model with every method kind (tests/toy_models.py).
"""
import base64
import json
import pathlib
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import requests

from tensorflow_serving.apis import classification_pb2, inference_pb2, model_pb2

from serving import monitoring, saved_model
from serving.client import ServingClientError
from serving.json_examples import examples_input
from serving.config_files import BatchingParameters, ModelSource
from serving.server import ModelServer, ServerOptions
from tests.conftest import TOP_K
from tests import toy_models
from tests.serving_endpoints import (Endpoints, free_port, push_version, real_tf_serving,
                                     real_tf_serving_toy_model)

MAX_BODY_BYTES = 2**20


@pytest.fixture(scope='module')
def pushed_version(first_run) -> pathlib.Path:
  _, workdir, _ = first_run
  return saved_model.latest_version_dir(workdir / 'serving_models' / 'retrieval')


def start_local_server(base_path: pathlib.Path, batching=True) -> ModelServer:
  """Our server on loopback, serving the model of base_path under the folder's name."""
  options = ServerOptions(host='127.0.0.1', port=free_port(), rest_api_port=free_port(),
                          file_system_poll_wait_seconds=0.2, rest_api_max_body_bytes=MAX_BODY_BYTES,
                          grpc_max_message_bytes=MAX_BODY_BYTES)
  return ModelServer([ModelSource(base_path.name, str(base_path))], options,
                     BatchingParameters() if batching else None, log=lambda message: None,
                     metrics_path=monitoring.DEFAULT_PATH).start()


def local_endpoints(server: ModelServer, base_path) -> Endpoints:
  return Endpoints('local', f'http://127.0.0.1:{server.rest_port}',
                   f'127.0.0.1:{server.grpc_port}', base_path.name, base_path,
                   server.metrics_path)


@pytest.fixture(scope='module', params=['local', 'tfserving'])
def endpoints(request, pushed_version, tmp_path_factory):
  """Our server over a copy of the pushed model (version 1), or the real TF Serving."""
  if request.param == 'tfserving':
    real = real_tf_serving()
    if real is None:
      pytest.skip('no real TF Serving: set TFSERVING_REST_URL and TFSERVING_GRPC_TARGET to '
                  'run this contract against one')
    yield real
    return
  base_path = tmp_path_factory.mktemp('models') / 'retrieval'
  push_version(pushed_version, base_path, 1)
  server = start_local_server(base_path)
  yield local_endpoints(server, base_path)
  server.stop()


def _latest_version(client) -> int:
  statuses = client.status()['model_version_status']
  return max(int(status['version']) for status in statuses if status['state'] == 'AVAILABLE')


# --- every endpoint ------------------------------------------------------------------------------

def test_model_status_over_rest_and_grpc(endpoints):
  rest, stub = endpoints.rest(), endpoints.grpc()
  over_rest = rest.status()
  assert over_rest == stub.status()
  available = [status for status in over_rest['model_version_status']
               if status['state'] == 'AVAILABLE']
  assert available and available[0]['status'] == {'error_code': 'OK', 'error_message': ''}
  version = int(available[0]['version'])
  assert rest.status(version)['model_version_status'][0]['version'] == str(version)
  assert stub.status(version)['model_version_status'][0]['state'] == 'AVAILABLE'


def test_model_metadata_over_rest_and_grpc(endpoints):
  over_rest = endpoints.rest().metadata()
  over_grpc = endpoints.grpc().metadata()
  assert over_rest['model_spec']['name'] == endpoints.model
  assert over_rest['model_spec']['version'] == str(_latest_version(endpoints.rest()))
  assert over_rest['metadata'] == over_grpc['metadata']
  serving_default = over_rest['metadata']['signature_def']['signature_def']['serving_default']
  assert serving_default['inputs']['user_id']['dtype'] == 'DT_STRING'
  assert serving_default['method_name'] == 'tensorflow/serving/predict'
  assert set(serving_default['outputs']) == {'movie_ids', 'movie_titles', 'scores', 'strategy'}
  version = _latest_version(endpoints.rest())
  response = requests.get(f'{endpoints.rest_url}/v1/models/{endpoints.model}/versions/{version}'
                          '/metadata', timeout=30)
  assert response.status_code == 200 and response.json()['metadata'] == over_rest['metadata']


def test_predict_row_and_columnar_formats_agree(endpoints):
  url = f'{endpoints.rest_url}/v1/models/{endpoints.model}:predict'
  row = requests.post(url, json={'instances': ['1', {'user_id': '2'}]}, timeout=30)
  columnar = requests.post(url, json={'signature_name': 'serving_default',
                                      'inputs': {'user_id': ['1', '2']}}, timeout=30)
  b64 = requests.post(url, json={'inputs': [{'b64': base64.b64encode(b'1').decode()}]},
                      timeout=30)
  assert row.status_code == columnar.status_code == b64.status_code == 200
  predictions = row.json()['predictions']
  outputs = columnar.json()['outputs']
  assert len(predictions) == 2
  assert set(predictions[0]) == {'movie_ids', 'movie_titles', 'scores', 'strategy'}
  assert len(outputs['movie_ids']) == 2 and len(outputs['movie_ids'][0]) == TOP_K
  for user in range(2):
    assert predictions[user]['movie_ids'] == outputs['movie_ids'][user]
    assert predictions[user]['movie_titles'] == outputs['movie_titles'][user]
    scores = predictions[user]['scores']
    assert scores == sorted(scores, reverse=True)
  assert b64.json()['outputs']['movie_ids'] == outputs['movie_ids'][:1]
  assert predictions[0]['movie_ids'] != predictions[1]['movie_ids']


def test_predict_over_grpc_matches_rest_and_names_the_version(endpoints):
  stub = endpoints.grpc()
  request = stub.predict_request({'user_id': ['1', '2']})
  request.output_filter.append('movie_ids')
  response = stub.predict_response(request)
  assert set(response.outputs) == {'movie_ids'}
  # As TF Serving writes outputs (Tensor::AsProtoField): typed fields that clients read as
  # outputs['movie_ids'].string_val, never tensor_content.
  assert len(response.outputs['movie_ids'].string_val) == 2 * TOP_K
  assert not response.outputs['movie_ids'].tensor_content
  assert response.model_spec.name == endpoints.model
  assert response.model_spec.signature_name == 'serving_default'
  assert response.model_spec.version.value == _latest_version(endpoints.rest())
  over_grpc = stub.predict({'user_id': ['1', '2']})
  over_rest = endpoints.rest().predict({'user_id': ['1', '2']})
  assert over_grpc['movie_ids'].shape == (2, TOP_K)
  assert [[movie.decode() for movie in row] for row in over_grpc['movie_ids']] == \
      over_rest['movie_ids'].tolist()
  np.testing.assert_allclose(over_grpc['scores'], over_rest['scores'].astype(float), rtol=1e-5)


def test_serving_exclude_signature_leaves_out_the_given_movies(endpoints):
  url = f'{endpoints.rest_url}/v1/models/{endpoints.model}:predict'
  top = endpoints.rest().predict({'user_id': ['1']})['movie_ids'][0].tolist()
  response = requests.post(url, json={'signature_name': 'serving_exclude', 'instances': [
      {'user_id': '1', 'exclude_movie_ids': top[:3]}]}, timeout=30)
  assert response.status_code == 200, response.text
  movies = response.json()['predictions'][0]['movie_ids']
  assert movies[:TOP_K - 3] == top[3:]
  stub = endpoints.grpc()
  over_grpc = stub.predict({'user_id': ['1'], 'exclude_movie_ids': [top[:3]]},
                           signature_name='serving_exclude')
  assert [movie.decode() for movie in over_grpc['movie_ids'][0]] == movies


def test_specific_version_is_served_on_request(endpoints):
  version = _latest_version(endpoints.rest())
  over_rest = endpoints.rest().predict({'user_id': ['3']}, version=version)
  over_grpc = endpoints.grpc().predict({'user_id': ['3']}, version=version)
  assert over_rest['movie_ids'].shape == over_grpc['movie_ids'].shape == (1, TOP_K)


# --- bad requests: TF Serving's codes, and the server keeps serving ------------------------------

def _post(endpoints, body, path=None):
  path = path or f'/v1/models/{endpoints.model}:predict'
  data = body if isinstance(body, (bytes, str)) else json.dumps(body)
  return requests.post(endpoints.rest_url + path, data=data, timeout=30)


@pytest.mark.parametrize('path,body,status', [
    ('/v1/models/no_such_model:predict', {'inputs': ['1']}, 404),
    ('/v1/models/{model}/versions/123:predict', {'inputs': ['1']}, 404),
    (None, {'signature_name': 'no_such_signature', 'inputs': ['1']}, 400),
    (None, {'inputs': [1, 2]}, 400),  # wrong dtype: user ids are strings
    (None, {'inputs': [['1'], ['2']]}, 400),  # wrong shape: [2, 1] for [-1]
    (None, {'inputs': {'user_id': ['1'], 'not_an_input': [1]}}, 400),
    (None, b'{"inputs": ["1"', 400),  # malformed JSON
    (None, {'input': ['1']}, 400),  # neither inputs nor instances
], ids=['unknown model', 'unknown version', 'unknown signature', 'wrong dtype', 'wrong shape',
        'unknown input', 'malformed JSON', 'no inputs'])
def test_bad_rest_requests_get_tf_serving_errors(endpoints, path, body, status):
  response = _post(endpoints, body, path and path.format(model=endpoints.model))
  assert response.status_code == status
  assert response.json()['error']
  assert endpoints.rest().status()['model_version_status']  # still serving


def test_unknown_user_ids_are_answered_with_the_popular_over_rest_and_grpc(endpoints):
  inputs = {'user_id': ['1', 'nobody']}
  for client in (endpoints.rest(), endpoints.grpc()):
    answer = client.predict(inputs)
    strategies = [getattr(value, 'decode', lambda: value)() for value in answer['strategy']]
    assert strategies == ['user', 'popular']  # bytes over gRPC, str over REST
    assert answer['movie_ids'].shape == (2, TOP_K)


def test_unknown_model_status_and_metadata_are_not_found(endpoints):
  for path in ('/v1/models/no_such_model', '/v1/models/no_such_model/metadata',
               f'/v1/models/{endpoints.model}/versions/123'):
    response = requests.get(endpoints.rest_url + path, timeout=30)
    assert response.status_code == 404 and response.json()['error']


def _grpc_code(call) -> grpc.StatusCode:
  with pytest.raises(ServingClientError) as raised:
    call()
  return raised.value.code


def test_bad_grpc_requests_get_tf_serving_codes(endpoints):
  stub = endpoints.grpc()
  unknown_model = endpoints.grpc()
  unknown_model.model = 'no_such_model'
  assert _grpc_code(lambda: unknown_model.predict({'user_id': ['1']})) == 'NOT_FOUND'
  assert _grpc_code(lambda: unknown_model.status()) == 'NOT_FOUND'
  assert _grpc_code(lambda: stub.predict({'user_id': ['1']}, version=123)) == 'NOT_FOUND'
  assert _grpc_code(lambda: stub.predict({'user_id': ['1']},
                                         signature_name='no_such_signature')) == \
      'FAILED_PRECONDITION'  # TF Serving 2.16's RunPredict: 'Serving signature key ... not found.'
  assert _grpc_code(lambda: stub.predict({'user_id': [1, 2]})) == 'INVALID_ARGUMENT'
  assert _grpc_code(lambda: stub.predict({'user_id': [['1']]})) == 'INVALID_ARGUMENT'
  assert _grpc_code(lambda: stub.predict({'movie_id': ['1']})) == 'INVALID_ARGUMENT'
  assert stub.predict({'user_id': ['1']})['movie_ids'].shape == (1, TOP_K)


def test_oversized_requests_are_refused(endpoints):
  if endpoints.name != 'local':
    pytest.skip('the size limits are our server\'s settings')
  user_ids = ['1'] * (MAX_BODY_BYTES // 2)  # over 1 MiB as JSON and as a TensorProto
  response = _post(endpoints, {'inputs': user_ids})
  assert response.status_code == 400 and 'over the limit' in response.json()['error']
  assert _grpc_code(lambda: endpoints.grpc().predict({'user_id': user_ids})) == \
      'RESOURCE_EXHAUSTED'
  too_many_rows = ['1'] * 1001  # small, but over --max_request_rows (1000)
  response = _post(endpoints, {'inputs': too_many_rows})
  assert response.status_code == 400 and '--max_request_rows' in response.json()['error']
  assert _grpc_code(lambda: endpoints.grpc().predict({'user_id': too_many_rows})) == \
      'INVALID_ARGUMENT'
  assert endpoints.rest().predict({'user_id': ['1']})['movie_ids'].shape == (1, TOP_K)


@pytest.mark.parametrize('path', [
    '/v1/models/..%2F..%2Fsecret', '/v1/models/../secret', '/v1/models/%2E%2E',
    '/v1/models/retrieval/versions/..%2F..%2Fsecret%2F1', '/etc/passwd'])
def test_request_names_never_reach_the_file_system(endpoints, path):
  """A valid model next to the base path is not reachable through a crafted name."""
  if endpoints.name != 'local':
    pytest.skip('needs the server\'s file system')
  secret = endpoints.base_path.parent / 'secret'
  if not secret.exists():
    push_version(endpoints.base_path / '1', secret, 1)
  for method in (requests.get, requests.post):
    response = method(endpoints.rest_url + path, data='{"inputs": ["1"]}', timeout=30)
    assert response.status_code == 404, (method, path, response.text)
  response = _post(endpoints, {'inputs': ['1']}, '/v1/models/..%2Fsecret:predict')
  assert response.status_code == 404


# --- versions: hot swap under load, broken versions, half-written versions -----------------------

@pytest.fixture
def swap_endpoints(request, pushed_version, tmp_path):
  """Endpoints whose model base path the test may write to (ours, or a real TF Serving's)."""
  real = real_tf_serving()
  if real is not None:
    if real.base_path is None:
      pytest.skip('set TFSERVING_MODEL_BASE_PATH to test version changes on TF Serving')
    yield real
    return
  base_path = tmp_path / 'retrieval'
  push_version(pushed_version, base_path, 1)
  server = start_local_server(base_path)
  yield local_endpoints(server, base_path)
  server.stop()


def _wait_for(condition, timeout=60.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.1)
  return False


def _states(client) -> dict:
  return {int(status['version']): (status['state'], status['status']['error_message'])
          for status in client.status()['model_version_status']}


def test_hot_swap_under_concurrent_load_fails_no_request(swap_endpoints, pushed_version):
  rest = swap_endpoints.rest()
  old = _latest_version(rest)
  new = old + 1
  failures, versions_seen, stop = [], set(), threading.Event()

  def load(use_grpc: bool):
    client = swap_endpoints.grpc() if use_grpc else swap_endpoints.rest()
    stub_request = swap_endpoints.grpc().predict_request({'user_id': ['1']})
    while not stop.is_set():
      try:
        if use_grpc:
          response = client.predict_response(stub_request)
          versions_seen.add(response.model_spec.version.value)
          assert response.outputs['movie_ids'].tensor_shape.dim[1].size == TOP_K
        else:
          assert client.predict({'user_id': ['1', '2']})['movie_ids'].shape == (2, TOP_K)
      except Exception as error:  # noqa: BLE001  (collected: the test asserts there are none)
        failures.append(repr(error))

  threads = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(8)]
  for thread in threads:
    thread.start()
  time.sleep(1.0)
  push_version(pushed_version, swap_endpoints.base_path, new)
  swapped = _wait_for(lambda: _states(rest).get(new, ('',))[0] == 'AVAILABLE'
                      and _states(rest).get(old, ('',))[0] == 'END')
  time.sleep(1.0)
  stop.set()
  for thread in threads:
    thread.join()
  assert swapped, _states(rest)
  assert failures == []
  assert {old, new} <= versions_seen
  assert _latest_version(rest) == new


def test_broken_new_version_leaves_the_old_one_serving(swap_endpoints):
  rest = swap_endpoints.rest()
  old = _latest_version(rest)
  broken = swap_endpoints.base_path / str(old + 1)
  broken.mkdir()
  (broken / 'saved_model.pb').write_bytes(b'this is not a SavedModel')
  assert _wait_for(lambda: _states(rest).get(old + 1, ('',))[0] == 'END')
  state, error_message = _states(rest)[old + 1]
  assert error_message  # the status reports why it failed
  assert _states(rest)[old][0] == 'AVAILABLE'
  stub = swap_endpoints.grpc()
  response = stub.predict_response(stub.predict_request({'user_id': ['1']}))
  assert response.model_spec.version.value == old


def test_half_written_version_is_not_served(swap_endpoints, pushed_version):
  """A version folder without saved_model.pb (the Pusher writes it last) is not loaded."""
  rest = swap_endpoints.rest()
  old = _latest_version(rest)
  partial = swap_endpoints.base_path / str(old + 1)
  shutil.copytree(pushed_version, partial, ignore=shutil.ignore_patterns('saved_model.pb'))
  time.sleep(1.5)  # several polls
  assert old + 1 not in _states(rest) and _latest_version(rest) == old
  shutil.copy2(pushed_version / 'saved_model.pb', partial / 'saved_model.pb')
  assert _wait_for(lambda: _latest_version(rest) == old + 1)


def test_garbage_and_abandoned_connections_do_not_wedge_the_server(endpoints):
  if endpoints.name != 'local':
    pytest.skip('raw sockets against our server only')
  import socket
  import urllib.parse
  address = urllib.parse.urlparse(endpoints.rest_url)
  for payload in (b'GARBAGE\r\n\r\n', b'POST /v1/models/retrieval:predict HTTP/1.1\r\n'
                  b'Content-Length: 100\r\n\r\n{"inputs"', b'\x00\xff' * 100):
    with socket.create_connection((address.hostname, address.port), timeout=5) as raw:
      raw.sendall(payload)  # then hang up without finishing the request
  assert endpoints.rest().predict({'user_id': ['1']})['movie_ids'].shape == (1, TOP_K)
  assert endpoints.grpc().predict({'user_id': ['1']})['movie_ids'].shape == (1, TOP_K)


def _metric_samples(endpoints):
  """{(sample name, frozenset of labels): value} of the Prometheus page, and its text.

  Read with prometheus_client's parser, which names a counter's samples <name>_total; TF
  Serving writes them as <name>, so the family's name is used for counters."""
  from prometheus_client.parser import text_string_to_metric_families
  response = requests.get(endpoints.rest_url + endpoints.metrics_path, timeout=30)
  assert response.status_code == 200
  assert response.headers['Content-Type'].startswith('text/plain')
  samples = {}
  for family in text_string_to_metric_families(response.text):
    for sample in family.samples:
      name = family.name if family.type == 'counter' else sample.name
      samples[(name, frozenset(sample.labels.items()))] = sample.value
  return samples, response.text


def test_prometheus_metrics_count_requests_and_latencies_as_tf_serving_names_them(endpoints):
  """--monitoring_config_file: requests by model and outcome, successful ones' latency by API
  and entrypoint (REST: the path's method in lower case; gRPC: Predict), version loads."""
  if not endpoints.metrics_path:
    pytest.skip('set TFSERVING_METRICS_PATH (its --monitoring_config_file path) to check a '
                "real TF Serving's metrics")
  before, _ = _metric_samples(endpoints)
  rest, stub = endpoints.rest(), endpoints.grpc()
  rest.predict({'user_id': ['1']})
  stub.predict({'user_id': ['1']})
  rest.status()
  assert requests.post(f'{endpoints.rest_url}/v1/models/no_such_model:predict',
                       json={'instances': [{'user_id': '1'}]}, timeout=30).status_code == 404
  after, text = _metric_samples(endpoints)

  def grew(name, **labels):
    key = (name, frozenset(labels.items()))
    return after.get(key, 0) - before.get(key, 0)

  model = endpoints.model
  assert '# TYPE :tensorflow:serving:request_count counter\n' in text
  assert f'\n:tensorflow:serving:request_count{{model_name="{model}",status="OK"}} ' in text
  assert grew(':tensorflow:serving:request_count', model_name=model, status='OK') == 3
  assert grew(':tensorflow:serving:request_count', model_name='no_such_model',
              status='NOT_FOUND') == 1
  for api, entrypoint in (('predict', 'REST'), ('Predict', 'GRPC'), ('', 'REST')):
    labels = dict(model_name=model, API=api, entrypoint=entrypoint)
    assert grew(':tensorflow:serving:request_latency_count', **labels) == 1
    assert grew(':tensorflow:serving:request_latency_bucket', **labels, le='+Inf') == 1
    assert grew(':tensorflow:serving:request_latency_sum', **labels) > 0
  loads = [value for (name, labels), value in after.items()
           if name == ':tensorflow:cc:saved_model:load_attempt_count'
           and ('status', 'success') in labels]
  assert loads and min(loads) >= 1


# --- TF Serving's half-plus-two (tests/toy_models.py): its input rules, Classify, Regress and
# --- MultiInference ------------------------------------------------------------------------------

@pytest.fixture(scope='module', params=['local', 'tfserving'])
def toy(request, tmp_path_factory):
  """Endpoints whose model is the half-plus-two of tests/toy_models.py."""
  if request.param == 'tfserving':
    real = real_tf_serving_toy_model()
    if real is None:
      pytest.skip('no real TF Serving serving tests/toy_models.py: set TFSERVING_REST_URL, '
                  'TFSERVING_GRPC_TARGET and TFSERVING_TOY_MODEL_NAME')
    yield real
    return
  base_path = tmp_path_factory.mktemp('toy') / toy_models.MODEL_NAME
  toy_models.write_half_plus_two(base_path)
  server = start_local_server(base_path)
  yield local_endpoints(server, base_path)
  server.stop()


def _toy_post(toy, method: str, body) -> requests.Response:
  return requests.post(f'{toy.rest_url}/v1/models/{toy.model}:{method}', json=body, timeout=30)


def test_predict_feeds_a_shape_the_signature_does_not_declare_as_tf_serving_does(toy):
  """TF Serving checks input names and dtypes, and leaves shapes to the graph: a [3] tensor for
  the input declared [-1, 1] is fed and answered, in both REST formats and over gRPC."""
  x = [1.0, 2.0, 5.0]
  expected = [toy_models.half_plus_two(value) for value in x]
  assert _toy_post(toy, 'predict', {'instances': x}).json() == {'predictions': expected}
  assert _toy_post(toy, 'predict', {'inputs': x}).json() == {'outputs': expected}
  assert _toy_post(toy, 'predict', {'inputs': {'x': [[1.0], [2.0]]}}).json() == {
      'outputs': [[2.5], [3.0]]}
  over_grpc = toy.grpc().predict({'x': np.array(x, np.float32)})['y']
  assert over_grpc.shape == (3,) and over_grpc.tolist() == expected
  # Names and dtypes are still checked, before the graph runs.
  assert _toy_post(toy, 'predict', {'inputs': ['a', 'b']}).status_code == 400
  assert _grpc_code(lambda: toy.grpc().predict({'x': np.array([1.0])})) == 'INVALID_ARGUMENT'
  assert _grpc_code(lambda: toy.grpc().predict({'z': np.array([1.0], np.float32)})) == \
      'INVALID_ARGUMENT'


def test_classify_answers_labels_and_scores_over_rest_and_grpc(toy):
  examples = [{'x': 1.0}, {'x': [3.0]}]
  expected = [[('y', 2.5), ('y+1', 3.5)], [('y', 3.5), ('y+1', 4.5)]]
  for client in (toy.rest(), toy.grpc()):
    assert client.classify(examples, signature_name='classify_x_to_class') == expected
    # Scores only: the labels are empty.
    assert client.classify(examples, signature_name='classify_x_to_y') == [[('', 2.5)],
                                                                          [('', 3.5)]]
  response = toy.grpc()._predictions.Classify(classification_pb2.ClassificationRequest(
      model_spec=model_pb2.ModelSpec(name=toy.model, signature_name='classify_x_to_y'),
      input=examples_input(examples)))
  assert response.model_spec.signature_name == 'classify_x_to_y'
  assert response.model_spec.version.value == 1


def test_regress_merges_the_context_into_every_example_over_rest_and_grpc(toy):
  """With a context, each example is the context's features and its own, its own winning."""
  for client in (toy.rest(), toy.grpc()):
    assert client.regress([{'x': 2.0}, {'x': -4.0}], signature_name='regress_x_to_y') == \
        [3.0, 0.0]
    assert client.regress([{}, {'x': 2.0}], context={'x': 4.0},
                          signature_name='regress_x_to_y2') == [5.0, 4.0]


def test_multi_inference_runs_every_task_on_the_same_examples(toy):
  results = toy.grpc().multi_inference(
      [('classify_x_to_class', 'classify'), ('regress_x_to_y', 'regress'),
       ('regress_x_to_y2', 'regress')], [{'x': 0.0}, {'x': 2.0}])
  assert results == [[[('y', 2.0), ('y+1', 3.0)], [('y', 3.0), ('y+1', 4.0)]],
                     [2.0, 3.0], [3.0, 4.0]]


@pytest.mark.parametrize('method,body', [
    ('regress', {'signature_name': 'classify_x_to_y', 'examples': [{'x': 1.0}]}),
    ('classify', {'signature_name': 'regress_x_to_y', 'examples': [{'x': 1.0}]}),
    ('classify', {'examples': [{'x': 1.0}]}),  # serving_default is a predict signature
    ('regress', {'signature_name': 'no_such_signature', 'examples': [{'x': 1.0}]}),
    ('regress', {'signature_name': 'regress_x_to_y', 'examples': [{'y': 1.0}]}),
    ('regress', {'signature_name': 'regress_x_to_y', 'examples': []}),
    ('regress', {'signature_name': 'regress_x_to_y', 'instances': [{'x': 1.0}]}),
    ('regress', {'signature_name': 'regress_x_to_y', 'examples': [{'x': [1.0, 'a']}]}),
    ('regress', {'signature_name': 'regress_x_to_y', 'examples': [{'x': [[1.0]]}]}),
], ids=['classify signature', 'regress signature', 'predict signature', 'unknown signature',
        'feature missing', 'no examples', 'instances', 'mixed kinds', 'nested list'])
def test_bad_classify_and_regress_requests_are_400s(toy, method, body):
  response = _toy_post(toy, method, body)
  assert response.status_code == 400 and response.json()['error'], response.text
  assert toy.rest().regress([{'x': 2.0}], signature_name='regress_x_to_y') == [3.0]


def test_bad_classify_regress_and_multi_inference_calls_get_tf_serving_codes(toy):
  stub = toy.grpc()
  assert _grpc_code(lambda: stub.regress([{'x': 1.0}], signature_name='classify_x_to_y')) == \
      'INVALID_ARGUMENT'
  assert _grpc_code(lambda: stub.classify([], signature_name='classify_x_to_y')) == \
      'INVALID_ARGUMENT'  # Input is empty.
  assert _grpc_code(lambda: stub.multi_inference(
      [('regress_x_to_y', 'regress'), ('regress_x_to_y', 'regress')], [{'x': 1.0}])) == \
      'INVALID_ARGUMENT'  # the same signature twice
  assert _grpc_code(lambda: stub.multi_inference([('serving_default', 'predict')],
                                                 [{'x': 1.0}])) == 'UNIMPLEMENTED'
  other_model = inference_pb2.MultiInferenceRequest(input=examples_input([{'x': 1.0}]))
  for name, signature in ((toy.model, 'regress_x_to_y'), ('other', 'regress_x_to_y2')):
    other_model.tasks.add(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature),
                          method_name='tensorflow/serving/regress')
  with pytest.raises(grpc.RpcError) as raised:
    stub._predictions.MultiInference(other_model, timeout=30)
  assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  unknown = toy.grpc()
  unknown.model = 'no_such_model'
  assert _grpc_code(lambda: unknown.classify([{'x': 1.0}])) == 'NOT_FOUND'


def test_classify_and_regress_keep_the_row_limit_and_are_counted_in_the_metrics(toy):
  if toy.name != 'local':
    pytest.skip("the row limit is our server's setting")
  too_many = [{'x': 1.0}] * 1001  # over --max_request_rows (1000)
  response = _toy_post(toy, 'regress', {'signature_name': 'regress_x_to_y',
                                        'examples': too_many})
  assert response.status_code == 400 and '--max_request_rows' in response.json()['error']
  assert _grpc_code(lambda: toy.grpc().regress(too_many, signature_name='regress_x_to_y')) == \
      'INVALID_ARGUMENT'
  assert _grpc_code(lambda: toy.grpc().multi_inference([('regress_x_to_y', 'regress')],
                                                       too_many)) == 'INVALID_ARGUMENT'
  before, _ = _metric_samples(toy)
  toy.grpc().classify([{'x': 1.0}], signature_name='classify_x_to_y')
  toy.rest().regress([{'x': 1.0}], signature_name='regress_x_to_y')
  after, _ = _metric_samples(toy)
  for api, entrypoint in (('Classify', 'GRPC'), ('regress', 'REST')):
    key = (':tensorflow:serving:request_latency_count',
           frozenset(dict(model_name=toy.model, API=api, entrypoint=entrypoint).items()))
    assert after[key] - before.get(key, 0) == 1
