"""The serving command lines: `python -m serving` started and stopped as make demo does, and
`python -m serving.client` over REST and gRPC."""
import pytest

from serving import demo
from tests.serving_endpoints import free_port


def test_demo_serves_the_pushed_model_over_rest_and_grpc_then_stops(first_run, capsys):
  _, workdir, _ = first_run
  exit_code = demo.main(['--model-base-path', str(workdir / 'serving_models' / 'retrieval'),
                         '--model-name', 'retrieval', '--grpc-port', str(free_port()),
                         '--rest-port', str(free_port()), '--user', '2', '-k', '3'])
  out = capsys.readouterr().out
  assert exit_code == 0, out
  assert 'Via REST' in out and 'Via gRPC' in out
  rest_answer, grpc_answer = out.split('Via gRPC')
  assert rest_answer.count('Top 3 movies for user 2') == grpc_answer.count('Top 3 movies') == 1
  titles = [line.split('(movie')[0] for line in rest_answer.splitlines() if '(movie ' in line]
  assert len(titles) == 3 and all(title in grpc_answer for title in titles)
  assert 'Server stopped' in out


def test_client_reports_an_unreachable_server_clearly(capsys):
  from serving import client
  port = free_port()
  assert client.main(['status', '--rest-port', str(port), '--timeout', '2']) == 1
  assert f'cannot reach the REST API at localhost:{port}' in capsys.readouterr().err
  assert client.main(['status', '--grpc', '--grpc-port', str(port), '--timeout', '2']) == 1
  assert 'UNAVAILABLE' in capsys.readouterr().err


def test_pipeline_recommend_says_which_strategy_answered_each_user(first_run, capsys):
  from pipeline import cli
  _, workdir, _ = first_run
  assert cli.main(['recommend', '--workdir', str(workdir), '--model-name', 'retrieval',
                   '--user', '1', '--user', 'nobody', '-k', '3']) == 0
  out = capsys.readouterr().out
  assert 'Top 3 movies for user 1 (strategy user:' in out
  assert 'Top 3 movies for user nobody (strategy popular:' in out


@pytest.mark.parametrize('processes', ['1', '2'])
def test_server_refuses_a_port_in_use_clearly(tmp_path, capsys, processes):
  """With several processes (serving/processes.py) before any of them starts: a bind with
  SO_REUSEPORT could otherwise share another program's port."""
  import socket
  from serving import server
  with socket.socket() as taken:
    taken.bind(('127.0.0.1', 0))
    taken.listen()
    port = taken.getsockname()[1]
    assert server.main(['--model_base_path', str(tmp_path), '--host', '127.0.0.1',
                        '--port', str(port), '--rest_api_port', str(free_port()),
                        '--server_processes', processes]) == 2
  assert f'cannot listen on 127.0.0.1:{port} for gRPC' in capsys.readouterr().err
