"""Canary rollouts: the label moves on models.config (serving/rollout.py), and a real server on
loopback that re-reads the file (--model_config_file_poll_wait_seconds) and routes requests by
version label, over REST and gRPC, while clients keep calling.

The models are tiny SavedModels written in a second whose one output is their version number,
so every answer says which version served it.
"""
import os
import threading
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from serving import rollout
from serving.client import GrpcClient, RestClient, ServingClientError
from serving.config_files import ModelSource, models_config_text
from serving.server import ModelServer, ServerOptions, parse_args
from tests.serving_endpoints import free_port

POLL_SECONDS = 0.1


class _Versioned(tf.Module):
  """serving_default(x [batch]) -> version [batch]: the version that answered (and x, echoed:
  with one output TF Serving's REST answer leaves out its name)."""

  def __init__(self, version: int):
    super().__init__()
    self.version = version

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
  def serve(self, x):
    return {'version': tf.fill(tf.shape(x), tf.constant(self.version, tf.int64)), 'x': x}


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
  """Versions 1, 2 and 3 of the model 'ab' on disk."""
  path = tmp_path_factory.mktemp('models') / 'ab'
  for version in (1, 2, 3):
    module = _Versioned(version)
    tf.saved_model.save(module, str(path / str(version)),
                        signatures={'serving_default': module.serve})
  return path


def _answer(client, version=None) -> int:
  return int(client.predict({'x': np.ones(1, np.float32)}, version=version)['version'][0])


def _eventually(condition, seconds: float = 20.0) -> None:
  deadline = time.monotonic() + seconds
  while not condition():
    assert time.monotonic() < deadline, 'the server did not apply the change in time'
    time.sleep(POLL_SECONDS)


def _serves(client, label: str, version: int) -> bool:
  try:
    return _answer(client, label) == version
  except ServingClientError:
    return False


@pytest.fixture
def config_path(tmp_path, base_path):
  """A models.config with version 1 pushed: stable."""
  path = str(tmp_path / rollout.CONFIG_NAME)
  rollout.push(path, 'ab', str(base_path), 1)
  return path


@pytest.fixture
def server(config_path):
  server = ModelServer(options=ServerOptions(host='127.0.0.1', port=free_port(),
                                             rest_api_port=0,
                                             file_system_poll_wait_seconds=POLL_SECONDS),
                       log=lambda message: None, config_file=config_path,
                       config_poll_seconds=POLL_SECONDS, allow_unavailable_labels=True).start()
  yield server
  server.stop()


def _clients(server):
  return (RestClient(f'http://127.0.0.1:{server.rest_port}', 'ab'),
          GrpcClient(f'127.0.0.1:{server.grpc_port}', 'ab'))


# --- the label moves, on the file ----------------------------------------------------------------

def test_the_first_push_is_stable_the_next_a_canary_and_a_third_waits_for_it(config_path,
                                                                             base_path):
  assert rollout.status(config_path)[0].stable == 1
  second = rollout.push(config_path, 'ab', str(base_path), 2)
  assert (second.stable, second.canary) == (1, 2)
  held = rollout.push(config_path, 'ab', str(base_path), 3)
  assert (held.stable, held.canary) == (1, 2)
  assert 'held' in held.message and 'canary --version 3' in held.message
  # A push that changes nothing (an unchanged re-run's) leaves the file as it was, mtime too.
  before = os.stat(config_path).st_mtime_ns
  assert 'canary already' in rollout.push(config_path, 'ab', str(base_path), 2).message
  assert os.stat(config_path).st_mtime_ns == before


def test_the_file_is_a_tf_serving_config_serving_exactly_the_labelled_versions(config_path,
                                                                               base_path):
  from serving.config_files import read_models_config
  rollout.push(config_path, 'ab', str(base_path), 2)
  (source,) = read_models_config(config_path)
  assert source == ModelSource('ab', str(base_path), 'specific', versions=(1, 2),
                               version_labels={'stable': 1, 'canary': 2})


def test_promote_makes_the_canary_stable_and_rollback_drops_it(config_path, base_path):
  rollout.push(config_path, 'ab', str(base_path), 2)
  promoted = rollout.promote(config_path, 'ab')
  assert (promoted.stable, promoted.canary) == (2, None)
  rollout.start_canary(config_path, 'ab', 3)
  rolled_back = rollout.rollback(config_path, 'ab')
  assert (rolled_back.stable, rolled_back.canary) == (2, None)
  assert rollout.status(config_path)[0].message.startswith('serves versions [2]')


@pytest.mark.parametrize('move,message', [
    (lambda path: rollout.promote(path, 'ab'), 'no canary to promote'),
    (lambda path: rollout.rollback(path, 'ab'), 'no canary to roll back'),
    (lambda path: rollout.start_canary(path, 'ab', 1), 'version 1 is the stable version'),
    (lambda path: rollout.promote(path, 'other'), "no model 'other' \\(models: ab\\)"),
])
def test_a_move_that_does_not_apply_says_why_and_writes_nothing(config_path, move, message):
  before = open(config_path).read()
  with pytest.raises(rollout.RolloutError, match=message):
    move(config_path)
  assert open(config_path).read() == before


def test_a_write_that_fails_leaves_the_previous_file_whole(config_path, base_path, monkeypatch):
  """A crash between writing and renaming: the old labels stay, no temporary file is left."""
  before = open(config_path).read()

  def crash(*_):
    raise OSError('disk gone')

  monkeypatch.setattr(rollout.os, 'replace', crash)
  with pytest.raises(OSError, match='disk gone'):
    rollout.push(config_path, 'ab', str(base_path), 2)
  assert open(config_path).read() == before
  assert sorted(os.listdir(os.path.dirname(config_path))) == ['models.config',
                                                              'models.config.lock']


def test_the_rollout_cli_moves_labels_and_reports_errors(config_path, base_path, capsys):
  rollout.push(config_path, 'ab', str(base_path), 2)
  assert rollout.main(['promote', '--config', config_path, '--model-name', 'ab']) == 0
  assert "ab: version 2 is stable (was version 1, now unloaded); labels {'stable': 2}" in \
      capsys.readouterr().out
  assert rollout.main(['rollback', '--config', config_path, '--model-name', 'ab']) == 2
  assert 'error: ab: no canary to roll back (stable is version 2)' in capsys.readouterr().err


# --- the server: labels, start-up, reloads -------------------------------------------------------

def test_labels_route_rest_and_grpc_requests_to_their_versions(server, config_path, base_path):
  rest, grpc_client = _clients(server)
  rollout.push(config_path, 'ab', str(base_path), 2)
  _eventually(lambda: _serves(rest, 'canary', 2))
  for client in (rest, grpc_client):
    assert _answer(client, 'stable') == 1 and _answer(client, 'canary') == 2
    assert _answer(client, 1) == 1
    with pytest.raises(ServingClientError, match='Unrecognized servable version label: beta'):
      _answer(client, 'beta')
  status = requests.get(f'http://127.0.0.1:{server.rest_port}/v1/models/ab/labels/canary',
                        timeout=5).json()
  assert [entry['version'] for entry in status['model_version_status']] == ['2']


def test_labels_at_start_up_need_allow_version_labels_for_unavailable_models(config_path):
  """As TF Serving: labels are checked before any version loads."""
  with pytest.raises(ValueError, match='Request to assign label to version 1 of model ab, which '
                     'is not currently available for inference.*'
                     '--allow_version_labels_for_unavailable_models'):
    ModelServer(options=ServerOptions(host='127.0.0.1', port=free_port(), rest_api_port=0),
                log=lambda message: None, config_file=config_path)
  args = parse_args(['--model_config_file', config_path, '--model_config_file_poll_wait_seconds',
                     '2', '--allow_version_labels_for_unavailable_models=true'])
  assert args.allow_version_labels_for_unavailable_models is True


def test_a_reload_adds_and_removes_models(server, config_path, base_path, tmp_path):
  rest, _ = _clients(server)
  other = ModelSource('other', str(base_path), 'specific', versions=(3,))
  ab = ModelSource('ab', str(base_path), 'specific', versions=(1,), version_labels={'stable': 1})
  rollout.write_atomically(config_path, models_config_text([ab, other]))
  other_client = RestClient(f'http://127.0.0.1:{server.rest_port}', 'other')
  _eventually(lambda: _serves(other_client, None, 3))
  assert _answer(rest, 'stable') == 1
  rollout.write_atomically(config_path, models_config_text([other]))
  _eventually(lambda: 'ab' not in server.manager.models)
  with pytest.raises(ServingClientError, match='404'):
    _answer(rest)
  assert _answer(other_client) == 3


def test_handle_reload_config_request_applies_a_config_over_grpc_with_the_same_rules(server,
                                                                                   base_path):
  import grpc
  from google.protobuf import text_format
  from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
  from tensorflow_serving.config import model_server_config_pb2

  def reload(**labels):
    config = text_format.Parse(models_config_text([ModelSource(
        'ab', str(base_path), 'specific', versions=(1, 2), version_labels=labels)]),
                               model_server_config_pb2.ModelServerConfig())
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
      return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
          model_management_pb2.ReloadConfigRequest(config=config), timeout=10)

  rest, _ = _clients(server)
  reload(stable=1, canary=2)
  _eventually(lambda: _serves(rest, 'canary', 2))
  with pytest.raises(grpc.RpcError) as raised:
    reload(stable=1, canary=3)  # an existing label moved onto a version that is not loaded
  assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
  assert 'version 3 of model ab' in raised.value.details()
  assert server.manager.labels('ab') == {'stable': 1, 'canary': 2}


def test_a_bad_config_on_reload_keeps_the_last_good_one_and_says_why(config_path, base_path):
  messages = []
  server = ModelServer(options=ServerOptions(host='127.0.0.1', port=free_port(), rest_api_port=0,
                                             file_system_poll_wait_seconds=POLL_SECONDS),
                       log=messages.append, config_file=config_path,
                       config_poll_seconds=POLL_SECONDS, allow_unavailable_labels=True).start()
  try:
    rest, _ = _clients(server)
    _eventually(lambda: _serves(rest, 'stable', 1))
    rollout.write_atomically(config_path, 'model_config_list { config { name: "ab" base_pth: "x" '
                             '} }')
    _eventually(lambda: any('not applied' in message for message in messages))
    (message,) = [message for message in messages if 'not applied' in message]
    assert config_path in message and 'Error parsing text-format' in message
    assert 'base_pth' in message
    assert _answer(rest, 'stable') == 1
    # A label moved onto a version that is not loaded: refused as TF Serving refuses it.
    stable_moved = ModelSource('ab', str(base_path), 'specific', versions=(1, 3),
                               version_labels={'stable': 3})
    rollout.write_atomically(config_path, models_config_text([stable_moved]))
    _eventually(lambda: any('version 3 of model ab, which is not currently available' in message
                            for message in messages))
    assert _answer(rest, 'stable') == 1
  finally:
    server.stop()


def test_promote_and_rollback_under_16_concurrent_clients_fail_no_request(server, config_path,
                                                                         base_path):
  rest, _ = _clients(server)
  failures, answers, stop = [], [], threading.Event()

  def client_loop(index: int):
    client = (RestClient(f'http://127.0.0.1:{server.rest_port}', 'ab') if index % 2 else
              GrpcClient(f'127.0.0.1:{server.grpc_port}', 'ab'))
    while not stop.is_set():
      try:
        answers.append(_answer(client, 'stable' if index % 4 < 3 else None))
      except Exception as error:  # noqa: BLE001  (every failure is counted)
        failures.append(repr(error))

  threads = [threading.Thread(target=client_loop, args=(index,)) for index in range(16)]
  for thread in threads:
    thread.start()
  try:
    rollout.push(config_path, 'ab', str(base_path), 2)
    _eventually(lambda: _serves(rest, 'canary', 2))
    rollout.promote(config_path, 'ab')
    _eventually(lambda: _serves(rest, 'stable', 2) and 1 not in
                server.manager.model('ab').available_versions())
    rollout.start_canary(config_path, 'ab', 3)
    _eventually(lambda: _serves(rest, 'canary', 3))
    rollout.rollback(config_path, 'ab')
    _eventually(lambda: 3 not in server.manager.model('ab').available_versions())
    time.sleep(0.5)
  finally:
    stop.set()
    for thread in threads:
      thread.join()
  assert failures == []
  assert len(answers) > 100 and {1, 2} <= set(answers)
  assert _answer(rest, 'stable') == 2
