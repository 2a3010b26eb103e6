"""The Kustomize base that deploys TF Serving over the pushed model dir."""
import pathlib

import yaml

from components.model import kinds
from kubeflow.runner import kubeflow_config
from pipeline.config import PipelineConfig
from serving import config_files
from serving.recommendations import DEFAULT_MODEL_NAME
from serving.server import parse_args

SERVING = pathlib.Path(__file__).resolve().parents[1] / 'kubeflow' / 'serving'


def _load(name):
  return yaml.safe_load((SERVING / name).read_text())


def test_kustomization_lists_existing_resources_and_config_files():
  kustomization = _load('kustomization.yaml')
  for resource in kustomization['resources']:
    assert (SERVING / resource).is_file(), resource
  for name in kustomization['configMapGenerator'][0]['files']:
    assert (SERVING / name).is_file(), name


def test_config_files_are_what_the_writer_makes_and_parse_as_tf_serving_protos():
  (model,) = config_files.read_models_config(SERVING / 'models.config')
  assert (SERVING / 'models.config').read_text() == config_files.models_config_text([model])
  batching = config_files.read_batching_parameters(SERVING / 'batching_parameters.txt')
  assert (SERVING / 'batching_parameters.txt').read_text() == \
      config_files.batching_parameters_text(batching)
  assert model.version_policy == 'latest' and model.base_path.endswith('/' + model.name)


def test_served_model_is_what_the_default_pipeline_pushes():
  """The default kind (sequential), in the folder its Pusher writes with the artifacts on the
  mounted volume (Kubeflow's pipeline root, or the local workdir, at /models); the clients ask
  for the same name."""
  (model,) = config_files.read_models_config(SERVING / 'models.config')
  assert model.name == kinds.DEFAULT == DEFAULT_MODEL_NAME == 'sequential'
  pushed_by_kubeflow = kubeflow_config(data_root='/data', pipeline_root='/models')
  pushed_locally = PipelineConfig(data_dir='/data', workdir='/models')
  for config in (pushed_by_kubeflow, pushed_locally):
    assert config.serving_model_name == model.name
    assert config.serving_model_dir == model.base_path == '/models/serving_models/sequential'


def test_deployment_serves_grpc_and_rest_and_is_ready_on_model_status():
  (model,) = config_files.read_models_config(SERVING / 'models.config')
  pod = _load('deployment.yaml')['spec']['template']['spec']
  container = pod['containers'][0]
  assert {p['name']: p['containerPort'] for p in container['ports']} == {'grpc': 8500, 'rest': 8501}
  assert container['readinessProbe']['httpGet']['path'] == f'/v1/models/{model.name}'
  assert container['resources']['requests']['cpu'] and container['resources']['requests']['memory']
  mounts = {mount['mountPath']: mount['name'] for mount in container['volumeMounts']}
  volumes = {volume['name']: volume for volume in pod['volumes']}
  assert set(mounts.values()) <= set(volumes)
  assert model.base_path.startswith('/models/') and mounts['/models'] == 'models'
  config_map = volumes[mounts['/config']]['configMap']['name']
  assert config_map == _load('kustomization.yaml')['configMapGenerator'][0]['name']
  # The same flags start our local server: the arguments are TF Serving's.
  args = parse_args(container['args'])
  assert args.model_config_file == '/config/models.config' and args.enable_batching is True
  assert args.batching_parameters_file == '/config/batching_parameters.txt'


def test_service_exposes_the_container_ports():
  service = _load('service.yaml')
  deployment = _load('deployment.yaml')
  assert service['spec']['selector'].items() <= deployment['spec']['template']['metadata']['labels'].items()
  assert {p['port'] for p in service['spec']['ports']} == {8500, 8501}


def test_the_canary_overlay_serves_the_pushers_labelled_models_config():
  """kubeflow/serving/canary: TF Serving reads <serving models>/models.config (the labels the
  Pusher and serving.rollout write), re-reads it, and accepts a canary label on a version that
  is still loading."""
  overlay = yaml.safe_load((SERVING / 'canary' / 'kustomization.yaml').read_text())
  assert overlay['resources'] == ['..']
  (patch,) = overlay['patches']
  assert patch['target'] == {'kind': 'Deployment', 'name': 'tf-serving'}
  (operation,) = yaml.safe_load(patch['patch'])
  assert operation['path'] == '/spec/template/spec/containers/0/args'
  args = parse_args(operation['value'])
  pushed = PipelineConfig(data_dir='/data', workdir='/models')
  assert args.model_config_file == f'{pushed.serving_models_dir}/models.config'
  assert args.model_config_file_poll_wait_seconds > 0
  assert args.allow_version_labels_for_unavailable_models is True
  base_args = _load('deployment.yaml')['spec']['template']['spec']['containers'][0]['args']
  assert {arg for arg in base_args if 'model_config' not in arg} <= set(operation['value'])


def test_prometheus_scrapes_the_metrics_page_the_monitoring_config_turns_on():
  """The pod annotations point at the REST port and the path monitoring.config serves, and
  both the base and the canary overlay pass the file."""
  from serving import monitoring
  deployment = _load('deployment.yaml')['spec']['template']
  annotations = deployment['metadata']['annotations']
  container = deployment['spec']['containers'][0]
  rest_port = {p['name']: p['containerPort'] for p in container['ports']}['rest']
  args = parse_args(container['args'])
  assert args.monitoring_config_file == '/config/monitoring.config'
  path = monitoring.parse_monitoring_config((SERVING / 'monitoring.config').read_text())
  assert annotations == {'prometheus.io/scrape': 'true', 'prometheus.io/port': str(rest_port),
                         'prometheus.io/path': path}
  canary = _load('canary/kustomization.yaml')['patches'][0]['patch']
  assert '--monitoring_config_file=/config/monitoring.config' in canary
