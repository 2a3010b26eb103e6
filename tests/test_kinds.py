"""Model kinds are classes (components/model/kinds.py): the registry, and what each kind's hooks
give the pipeline, the CLI and the trainer. Builds pipelines and towers; runs nothing."""
import json
import re
import types

import pytest

from components import features as f
from components.model import kinds
from components.model.config import MODEL_KINDS, TUNED, ModelConfig
from components.model.towers import ContextTower, QueryTower
from components.transform import NUM_OOV_BUCKETS
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

MAX_RMSE = 0.9


def _settings(kind: str) -> PipelineConfig:
  return PipelineConfig(data_dir='/data', workdir='/workdir', model=ModelConfig.tuned(kind),
                        max_rmse=MAX_RMSE)


@pytest.fixture(scope='module', params=MODEL_KINDS)
def built(request):
  """(the kind, its pipeline's components by id)."""
  kind = kinds.of(request.param)
  return kind, {component.id: component
                for component in create_pipeline(_settings(kind.name)).components}


def _metric_classes(evaluator) -> list:
  eval_config = json.loads(evaluator.exec_properties['eval_config'])
  return [metric['class_name'] for spec in eval_config['metrics_specs']
          for metric in spec['metrics']]


def test_the_registry_holds_every_model_kind_under_its_own_name():
  assert tuple(kinds.KINDS) == MODEL_KINDS == ('retrieval', 'multitask', 'sequential')
  for name, kind in kinds.KINDS.items():
    assert kind.name == name
    assert TUNED[name] == dict(kind.tuned)
    assert ModelConfig.tuned(name).model_kind is kind
  assert isinstance(kinds.of('multitask'), kinds.Retrieval)


@pytest.mark.parametrize('make', [
    kinds.of, lambda name: ModelConfig(kind=name), ModelConfig.tuned,
    lambda name: ModelConfig.from_dict({'kind': name})])
def test_an_unknown_kind_is_an_error_naming_the_known_kinds(make):
  known = re.escape("('retrieval', 'multitask', 'sequential')")
  with pytest.raises(ValueError, match=f"model kind 'ranking' is not one of {known}"):
    make('ranking')


def test_the_model_flag_help_describes_every_kind():
  help_text = ModelConfig.__dataclass_fields__['kind'].metadata['help']
  assert help_text == ('model kind: retrieval (user -> movies), multitask (retrieval plus a '
                       'rating head) or sequential (recent movies -> the next one)')


def test_sequential_alone_builds_timelines_before_transform(built):
  kind, components = built
  transform = components['Transform']
  upstream = {node.id for node in transform.upstream_nodes}
  assert kind.timelines == (kind.name == 'sequential')
  if kind.timelines:
    assert {'TimelineGen', 'timeline_schema_gen'} <= upstream
    # After both data gates (AnomaliesGate, then DriftGate).
    assert 'DriftGate' in {node.id for node in components['TimelineGen'].upstream_nodes}
    assert transform.inputs['schema'].producer_component_id == 'timeline_schema_gen'
    assert (transform.exec_properties['preprocessing_fn']
            == 'components.transform.timeline_preprocessing_fn')
  else:
    assert not {'TimelineGen', 'timeline_schema_gen'} & set(components)
    assert 'DriftGate' in upstream
    assert transform.exec_properties['preprocessing_fn'] == 'components.transform.preprocessing_fn'
    assert json.loads(transform.exec_properties['custom_config']) == {'timestamp_buckets': 1000}


def test_the_model_trains_and_is_evaluated_on_its_kinds_examples(built):
  kind, components = built
  expected = 'TimelineGen' if kind.name == 'sequential' else 'FileBasedExampleGen'
  assert kind.examples_component == expected
  assert components['Transform'].inputs['examples'].producer_component_id == expected
  assert components['Evaluator'].inputs['examples'].producer_component_id == expected


def test_multitask_alone_gates_on_the_rating_rmse(built):
  kind, components = built
  settings = _settings(kind.name)
  metrics = _metric_classes(components['Evaluator'])
  if kind.name == 'multitask':
    assert kind.gate(settings) == {'max_rmse': MAX_RMSE}
    assert 'RootMeanSquaredError' in metrics
    assert kind.describe_gate(settings) == f' and rating_rmse <= {MAX_RMSE}'
  else:
    assert kind.gate(settings) == {} and kind.describe_gate(settings) == ''
    assert metrics == ['ExampleCount'] + ['TopKAccuracy'] * 3


def test_each_kind_sizes_its_query_tower_from_the_vocabulary_it_queries_by():
  sizes = {f.USER_ID_VOCAB: 7, f.MOVIE_ID_VOCAB: 11}
  tft_output = types.SimpleNamespace(vocabulary_size_by_name=sizes.__getitem__)
  config = ModelConfig()
  user_tower = kinds.of('retrieval').query_tower(config, tft_output)
  assert isinstance(user_tower, QueryTower)
  assert user_tower.user_embedding.input_dim == 7 + NUM_OOV_BUCKETS
  assert isinstance(kinds.of('multitask').query_tower(config, tft_output), QueryTower)
  context_tower = kinds.of('sequential').query_tower(config, tft_output)
  assert isinstance(context_tower, ContextTower)
  assert context_tower.movie_embedding.input_dim == 11 + NUM_OOV_BUCKETS + 1  # + padding
  for name in ('retrieval', 'sequential'):
    assert kinds.of(name).rating_head(config, tft_output, catalogue=None) is None
