"""models.config and batching parameter files: what real TF Serving reads, read back by ours."""
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import config_files
from serving.config_files import BatchingParameters, ModelSource
from serving.server import parse_args, server_from_args


def test_models_config_is_a_model_server_config_with_the_version_policy(tmp_path):
  text = config_files.models_config_text([
      ModelSource('retrieval', '/models/retrieval'),
      ModelSource('multitask', 'gs://bucket/models/multitask', 'specific', versions=(3, 4))])
  config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
  first, second = config.model_config_list.config
  assert (first.name, first.base_path, first.model_platform) == \
      ('retrieval', '/models/retrieval', 'tensorflow')
  assert first.model_version_policy.latest.num_versions == 1
  assert list(second.model_version_policy.specific.versions) == [3, 4]
  path = tmp_path / 'models.config'
  path.write_text(text)
  assert config_files.read_models_config(path)[1] == \
      ModelSource('multitask', 'gs://bucket/models/multitask', 'specific', 1, (3, 4))


def test_batching_parameters_round_trip_in_tf_servings_format(tmp_path):
  parameters = BatchingParameters(max_batch_size=64, batch_timeout_micros=500,
                                  max_enqueued_batches=10, num_batch_threads=3)
  text = config_files.batching_parameters_text(parameters)
  assert 'max_batch_size {\n  value: 64\n}' in text
  path = tmp_path / 'batching_parameters.txt'
  path.write_text(text + 'pad_variable_length_inputs: true\n')
  assert config_files.read_batching_parameters(path) == parameters


@pytest.mark.parametrize('text,message', [
    ('max_batch_size { valu: 3 }', 'no field named "valu"'),
    ('max_batch_size { value: 0 }', 'max_batch_size must be >= 1'),
])
def test_bad_batching_files_name_the_file_and_the_problem(tmp_path, text, message):
  path = tmp_path / 'batching.txt'
  path.write_text(text)
  with pytest.raises(ValueError, match=message) as raised:
    config_files.read_batching_parameters(path)
  assert str(path) in str(raised.value)


def test_bad_models_config_names_the_file_and_line(tmp_path):
  path = tmp_path / 'models.config'
  path.write_text('model_config_list {\n  config { name: "a" base_pth: "/x" }\n}\n')
  with pytest.raises(ValueError, match=r'models.config: Error parsing text-format '
                     r'tensorflow.serving.ModelServerConfig: 2:\d+'):
    config_files.read_models_config(path)


def test_config_writer_cli_writes_both_files(tmp_path, capsys):
  assert config_files.main(['--model-base-path', '/models/retrieval',
                            '--models-config', str(tmp_path / 'models.config'),
                            '--batching-config', str(tmp_path / 'batching.txt'),
                            '--max-batch-size', '16']) == 0
  assert config_files.read_models_config(tmp_path / 'models.config')[0].base_path == \
      '/models/retrieval'
  assert config_files.read_batching_parameters(tmp_path / 'batching.txt').max_batch_size == 16
  assert 'wrote' in capsys.readouterr().out


def test_server_flags_are_tf_servings(tmp_path):
  args = parse_args(['--model_name=ranking', '--model_base_path', str(tmp_path),
                     '--rest-api-port', '0', '--port', '0', '--enable_batching'])
  assert (args.model_name, args.rest_api_port, args.enable_batching) == ('ranking', 0, True)
  with pytest.raises(SystemExit):
    parse_args(['--port', '1'])  # neither a base path nor a config file
