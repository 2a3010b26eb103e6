"""The Kubeflow V2 spec compiled from the same create_pipeline(config) as local runs."""
import json
import os
import pathlib

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import runner
from pipeline.config import CURATED_SCHEMA, TIMELINE_SCHEMA

REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGE = 'registry.example/movielens-pipeline:test'


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  output = tmp_path_factory.mktemp('kfp') / 'pipeline.json'
  config = runner.kubeflow_config(
      data_root='gs://bucket/movielens/ml-100k', pipeline_root='gs://bucket/movielens/root',
      serving_model_dir='gs://bucket/serving', beam_args=['--direct_num_workers=0'], epochs=3)
  runner.compile_pipeline(config, IMAGE, str(output))
  job = json.loads(output.read_text())
  # Strict parse: every field must be one the PipelineSpec proto knows.
  return json_format.ParseDict(job['pipelineSpec'], pipeline_spec_pb2.PipelineSpec())


def _parameter(spec, task, name):
  # TFX 1.16 writes the schema 2.0 field constantValue.
  return spec.root.dag.tasks[task].inputs.parameters[name].runtime_value.constant_value.string_value


def test_components_depend_on_each_other_in_data_flow_order(spec):
  """The default: the sequential model, gated on the time split, refitted and pushed."""
  tasks = spec.root.dag.tasks
  flow = ['FileBasedExampleGen', 'StatisticsGen', 'ExampleValidator', 'AnomaliesGate',
          'DriftGate', 'TimelineGen', 'Transform', 'Trainer', 'Evaluator', 'Pusher']
  for upstream, downstream in zip(flow, flow[1:]):
    assert upstream in tasks[downstream].dependent_tasks, (upstream, downstream)
  # The drift check: the previous run's statistics, resolved before this run's, against them.
  assert 'previous_statistics_resolver' in tasks['StatisticsGen'].dependent_tasks
  assert {'StatisticsGen', 'previous_statistics_resolver'} <= \
      set(tasks['DistributionValidator'].dependent_tasks)
  assert 'DistributionValidator' in tasks['DriftGate'].dependent_tasks
  assert {'Transform', 'Refit'} <= {*tasks['Refit'].dependent_tasks, 'Refit'}
  assert 'Trainer' in tasks['Refit'].dependent_tasks  # it continues the gated model
  assert 'Evaluator' not in tasks['Refit'].dependent_tasks  # beside the gate
  assert 'Refit' in tasks['Pusher'].dependent_tasks
  assert 'ImportSchemaGen' in tasks['ExampleValidator'].dependent_tasks


def test_the_pusher_runs_only_on_a_blessing_and_the_refit_always(spec):
  """Refit outside the condition: under it the blessing would be its input, new every run,
  and an unchanged re-run could not reuse the cached refit."""
  tasks = spec.root.dag.tasks
  condition = tasks['Pusher'].trigger_policy.condition
  assert "metadata['blessed'] == 1.0" in condition and 'blessing' in condition
  for name in ('Trainer', 'Refit'):
    assert not tasks[name].trigger_policy.condition, name
  # The model card: under the same condition, after the push, of the pushed (refit) model.
  assert "metadata['blessed'] == 1.0" in tasks['ModelCard'].trigger_policy.condition
  assert {'Pusher', 'Refit', 'Evaluator', 'Transform'} <= set(tasks['ModelCard'].dependent_tasks)


def test_every_step_runs_the_pipeline_image_with_beam_args(spec):
  executors = spec.deployment_spec.fields['executors'].struct_value.fields
  containers = {name: executor.struct_value.fields['container'].struct_value.fields
                for name, executor in executors.items()
                if 'container' in executor.struct_value.fields}
  # Every component runs in a container; only the resolvers' MLMD queries do not (the latest
  # blessed model's two, the previous statistics' one).
  assert len(containers) == len(spec.root.dag.tasks) - 3
  for name, container in containers.items():
    assert container['image'].string_value == IMAGE, name
  trainer_args = [value.string_value for value in
                  executors['Trainer_executor'].struct_value.fields['container']
                  .struct_value.fields['args'].list_value.values]
  assert '--direct_num_workers=0' in trainer_args


def test_functions_and_parameters_reach_the_components(spec):
  assert (_parameter(spec, 'Transform', 'preprocessing_fn')
          == 'components.transform.timeline_preprocessing_fn')
  for trainer in ('Trainer', 'Refit'):
    assert _parameter(spec, trainer, 'run_fn') == 'components.trainer.run_fn'
    assert json.loads(_parameter(spec, trainer, 'custom_config'))['epochs'] == 3
  assert json.loads(_parameter(spec, 'Trainer', 'train_args')) == {'splits': ['train']}
  assert json.loads(_parameter(spec, 'Trainer', 'eval_args')) == {'splits': ['valid']}
  assert json.loads(_parameter(spec, 'Refit', 'train_args')) == {
      'splits': ['train', 'valid', 'eval']}
  assert _parameter(spec, 'FileBasedExampleGen', 'input_base') == 'gs://bucket/movielens/ml-100k'
  assert _parameter(spec, 'ImportSchemaGen', 'schema_file') == runner.IMAGE_SCHEMA_FILE
  push = json.loads(_parameter(spec, 'Pusher', 'push_destination'))
  assert push['filesystem']['base_directory'] == 'gs://bucket/serving/sequential'
  executors = spec.deployment_spec.fields['executors'].struct_value.fields
  example_gen_args = executors['FileBasedExampleGen_executor'].struct_value.fields[
      'container'].struct_value.fields['args'].list_value.values
  assert ('components.ingest.example_gen.TimeSplitExecutor'
          in [v.string_value for v in example_gen_args])
  assert _parameter(spec, 'TimelineGen', 'eval_examples') == 'future'  # the time split's


def test_resolver_evaluator_and_pusher_are_wired_as_locally(spec):
  evaluator = spec.root.dag.tasks['Evaluator'].inputs.artifacts
  assert evaluator['model'].task_output_artifact.producer_task == 'Trainer'
  assert (evaluator['baseline_model'].task_output_artifact.producer_task
          == 'latest_blessed_model_resolver-model-resolver')
  assert evaluator['examples'].task_output_artifact.producer_task == 'TimelineGen'
  pusher = spec.root.dag.tasks['Pusher'].inputs.artifacts
  assert pusher['model'].task_output_artifact.producer_task == 'Refit'
  assert pusher['model_blessing'].task_output_artifact.producer_task == 'Evaluator'


def test_dockerfile_installs_the_lock_file_and_puts_the_schema_where_the_spec_says():
  dockerfile = (REPO / 'kubeflow' / 'Dockerfile').read_text()
  assert 'COPY requirements.lock' in dockerfile
  assert 'uv pip install --system --no-cache -r requirements.lock' in dockerfile
  assert f'WORKDIR {runner.IMAGE_REPO_DIR}' in dockerfile
  assert 'COPY components ./components' in dockerfile
  for schema, in_image in ((CURATED_SCHEMA, runner.IMAGE_SCHEMA_FILE),
                           (TIMELINE_SCHEMA, runner.IMAGE_TIMELINE_SCHEMA_FILE)):
    assert in_image == f'{runner.IMAGE_REPO_DIR}/{os.path.relpath(schema, REPO)}'


def test_retrieval_spec_transforms_and_evaluates_the_ratings(tmp_path):
  config = runner.kubeflow_config(data_root='gs://bucket/movielens/ml-1m',
                                  pipeline_root='gs://bucket/root', model_kind='retrieval')
  output = tmp_path / 'pipeline.json'
  runner.compile_pipeline(config, IMAGE, str(output))
  spec = json_format.ParseDict(json.loads(output.read_text())['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())
  tasks = spec.root.dag.tasks
  assert 'TimelineGen' not in tasks
  assert 'DriftGate' in tasks['Transform'].dependent_tasks  # after AnomaliesGate
  assert (tasks['Evaluator'].inputs.artifacts['examples'].task_output_artifact.producer_task
          == 'FileBasedExampleGen')
  assert _parameter(spec, 'Transform', 'preprocessing_fn') == 'components.transform.preprocessing_fn'


def test_a_span_spec_ingests_the_newest_span_and_blesses_the_pushed_refit_model(tmp_path):
  """With span folders: ExampleGen's {SPAN} pattern; the refit model, once pushed, is blessed
  for the next run's resolver (components/refit_blessing.py)."""
  config = runner.kubeflow_config(data_root='gs://bucket/movielens/spans',
                                  pipeline_root='gs://bucket/root', spans=True)
  output = tmp_path / 'pipeline.json'
  runner.compile_pipeline(config, IMAGE, str(output))
  spec = json_format.ParseDict(json.loads(output.read_text())['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())
  tasks = spec.root.dag.tasks
  assert 'span-{SPAN}/*' in _parameter(spec, 'FileBasedExampleGen', 'input_config')
  blessing = tasks['RefitBlessing']
  assert {'Pusher', 'Refit', 'Evaluator'} <= set(blessing.dependent_tasks)
  # The refit model comes after the gated one, so the resolver's latest (by id) is the refit.
  assert 'Trainer' in tasks['Refit'].dependent_tasks
  assert "metadata['blessed'] == 1.0" in blessing.trigger_policy.condition
  assert 'SpanWindow' not in tasks  # the newest span alone: no span-range resolver on KFP


VERTEX = runner.TrainerPlacement(workers=3, cpu=4, memory_gb=16, vertex_project='project',
                                 vertex_region='us-central1', machine_type='n1-highmem-8')


@pytest.fixture(scope='module')
def vertex_spec(tmp_path_factory):
  """The default pipeline with its trainers on Vertex AI Training, 3 workers each."""
  output = tmp_path_factory.mktemp('kfp') / 'pipeline.json'
  config = runner.kubeflow_config(data_root='gs://bucket/movielens/ml-100k',
                                  pipeline_root='gs://bucket/root', trainers=VERTEX)
  runner.compile_pipeline(config, IMAGE, str(output), VERTEX)
  return json_format.ParseDict(json.loads(output.read_text())['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())


def _container(spec, task):
  return spec.deployment_spec.fields['executors'].struct_value.fields[
      f'{task}_executor'].struct_value.fields['container'].struct_value.fields


def test_trainers_on_vertex_ai_train_with_a_chief_and_workers_on_the_pipeline_image(
    vertex_spec):
  """TFX's Vertex AI Trainer executor starts a CustomJob: one chief and two workers, each
  running run_fn under Vertex's TF_CONFIG, the model with MultiWorkerMirrored; the trainer pod
  (it launches the job) gets the CPU and memory limits."""
  for trainer in runner.TRAINER_IDS:
    container = _container(vertex_spec, trainer)
    args = [value.string_value for value in container['args'].list_value.values]
    assert ('tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor'
            in args), trainer
    resources = container['resources'].struct_value.fields
    assert (resources['cpuLimit'].number_value, resources['memoryLimit'].number_value) == (4, 16)
    custom_config = json.loads(_parameter(vertex_spec, trainer, 'custom_config'))
    assert custom_config['distribution'] == 'multi-worker-mirrored'
    assert custom_config['ai_platform_enable_vertex'] is True
    assert custom_config['ai_platform_vertex_region'] == 'us-central1'
    job = custom_config['ai_platform_training_args']
    assert job['project'] == 'project'
    pools = job['job_spec']['worker_pool_specs']
    assert [pool['replica_count'] for pool in pools] == [1, 2]  # chief, then the workers
    for pool in pools:
      assert pool['container_spec']['image_uri'] == IMAGE
      assert pool['machine_spec']['machine_type'] == 'n1-highmem-8'


def test_the_default_spec_trains_in_one_pod_with_the_clusters_defaults(spec):
  for trainer in runner.TRAINER_IDS:
    assert 'resources' not in _container(spec, trainer)
    assert json.loads(_parameter(spec, trainer, 'custom_config'))['distribution'] == 'one-process'
  assert 'tfx.components.trainer.executor.GenericExecutor' in [
      value.string_value for value in _container(spec, 'Trainer')['args'].list_value.values]


def test_several_trainer_workers_need_vertex_ai_training():
  with pytest.raises(ValueError, match='need Vertex AI Training'):
    runner.TrainerPlacement(workers=2, cpu=8)
  with pytest.raises(ValueError, match='both a project and a region'):
    runner.TrainerPlacement(vertex_project='project')


def test_csv_data_is_compiled_with_the_half_star_scale_and_the_default_with_whole_stars(
    spec, tmp_path):
  """The compiler cannot read the data root: --rating-scale gives the data's stars to the
  schema's rating domain (both schema steps) and to the model (its clipping)."""
  output = tmp_path / 'pipeline.json'
  assert runner.main(['--data-root', 'gs://bucket/movielens/ml-25m', '--pipeline-root',
                      'gs://bucket/root', '--rating-scale', 'half-stars', '--output',
                      str(output)]) == 0
  csv_spec = json_format.ParseDict(json.loads(output.read_text())['pipelineSpec'],
                                   pipeline_spec_pb2.PipelineSpec())
  for compiled, scale in ((csv_spec, 'half-stars'), (spec, 'whole-stars')):
    assert _parameter(compiled, 'ImportSchemaGen', 'rating_scale') == scale
    assert _parameter(compiled, 'timeline_schema_gen', 'rating_scale') == scale
    assert json.loads(_parameter(compiled, 'Trainer', 'custom_config'))['rating_scale'] == scale
