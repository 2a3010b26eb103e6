"""The Kustomize base that deploys TF Serving over the pushed model dir."""
import pathlib

import yaml

SERVING = pathlib.Path(__file__).resolve().parents[1] / 'kubeflow' / 'serving'


def _load(name):
  return yaml.safe_load((SERVING / name).read_text())


def test_kustomization_lists_existing_resources_and_the_model_settings():
  kustomization = _load('kustomization.yaml')
  for resource in kustomization['resources']:
    assert (SERVING / resource).is_file(), resource
  literals = dict(item.split('=', 1)
                  for item in kustomization['configMapGenerator'][0]['literals'])
  assert literals['MODEL_BASE_PATH'].endswith('/' + literals['MODEL_NAME'])


def test_deployment_serves_grpc_and_rest_and_is_ready_on_model_status():
  kustomization = _load('kustomization.yaml')
  model_name = dict(item.split('=', 1) for item in
                    kustomization['configMapGenerator'][0]['literals'])['MODEL_NAME']
  pod = _load('deployment.yaml')['spec']['template']['spec']
  container = pod['containers'][0]
  assert {p['name']: p['containerPort'] for p in container['ports']} == {'grpc': 8500, 'rest': 8501}
  assert '--model_base_path=$(MODEL_BASE_PATH)' in container['args']
  assert container['readinessProbe']['httpGet']['path'] == f'/v1/models/{model_name}'
  assert container['resources']['requests']['cpu'] and container['resources']['requests']['memory']
  mount = container['volumeMounts'][0]
  assert mount['name'] in {volume['name'] for volume in pod['volumes']}
  base_path = dict(item.split('=', 1) for item in
                   kustomization['configMapGenerator'][0]['literals'])['MODEL_BASE_PATH']
  assert base_path.startswith(mount['mountPath'] + '/')


def test_service_exposes_the_container_ports():
  service = _load('service.yaml')
  deployment = _load('deployment.yaml')
  assert service['spec']['selector'].items() <= deployment['spec']['template']['metadata']['labels'].items()
  assert {p['port'] for p in service['spec']['ports']} == {8500, 8501}
