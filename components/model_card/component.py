"""ModelCard: the TFX component that writes a model card for the model the Pusher pushed.

Runs after the Pusher (inside the gate's Cond), reads the run's artifacts (facts.py) and writes
the card (render.py) into its own ModelCard artifact and, when the model was pushed, beside the
pushed version: <serving model dir>/<name>/model_cards/<version>/model_card.{html,md}. TF
Serving only loads folders named by a number, so model_cards/ is never taken for a version.
A class-based component (not a function one) because the card names this execution's MLMD id
and the pipeline run, which only an executor's context has.
"""
import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.io import fileio
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components import settings_gen
from components.eval_config import failed_thresholds
from components.model import data_settings
from components.model.config import ModelConfig
from components.model_card import facts as card_facts
from components.model_card import render

CARDS_FOLDER = 'model_cards'
# What each input is for, in the lineage table.
_ROLES = {'model': 'the model (SavedModels)', 'model_run': 'its training logs (TensorBoard)',
          'evaluation': "the Evaluator's metrics", 'blessing': "the gate's verdict",
          'pushed_model': 'the push', 'transform_graph': 'the feature transform',
          'examples': 'the training and eval examples',
          'data_settings': 'the settings chosen for the data (SettingsGen)'}


class ModelCardArtifact(types.Artifact):
  """A folder holding model_card.html, model_card.md and the Markdown's plots. (Kubeflow's
  compiler wants custom type names as <namespace>.<Name>.)"""
  TYPE_NAME = 'movielens.ModelCard'


class ModelCardSpec(types.ComponentSpec):
  PARAMETERS = {
      'model_name': ExecutionParameter(type=str),  # the served name (serving_models/<name>)
      'model_config': ExecutionParameter(type=str),  # ModelConfig.to_dict() as JSON
      'refit': ExecutionParameter(type=int),  # 1: the pushed model is the gated one refit
  }
  INPUTS = {
      'model': ChannelParameter(type=standard_artifacts.Model),
      'model_run': ChannelParameter(type=standard_artifacts.ModelRun),
      'evaluation': ChannelParameter(type=standard_artifacts.ModelEvaluation),
      'blessing': ChannelParameter(type=standard_artifacts.ModelBlessing),
      'pushed_model': ChannelParameter(type=standard_artifacts.PushedModel),
      'transform_graph': ChannelParameter(type=standard_artifacts.TransformGraph),
      'examples': ChannelParameter(type=standard_artifacts.Examples),
      'data_settings': ChannelParameter(type=standard_artifacts.HyperParameters),
  }
  OUTPUTS = {'model_card': ChannelParameter(type=ModelCardArtifact)}


def card_folder(pushed_version_dir: str) -> str:
  """<base path>/<version> -> <base path>/model_cards/<version>: where its card goes."""
  base_path, version = os.path.split(pushed_version_dir.rstrip('/'))
  return os.path.join(base_path, CARDS_FOLDER, version)


def _lineage(inputs: Dict[str, types.Artifact]) -> List[card_facts.Artifact]:
  return [card_facts.Artifact(_ROLES[name], artifact.type_name, artifact.id, artifact.uri,
                              artifact.producer_component or '')
          for name, artifact in inputs.items()]


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],  # noqa: N802  (TFX's name)
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    # (The Cond adds the blessing again under its own key: only the spec's inputs are read.)
    inputs = {name: artifact_utils.get_single_instance(input_dict[name]) for name in _ROLES}
    card = artifact_utils.get_single_instance(output_dict['model_card'])
    # TFX's executor operator passes the MLMD execution id as the context's unique_id, which
    # its Context keeps without a public accessor.
    execution_id = str(getattr(self._context, '_unique_id', '') or '')
    facts = gather(inputs, exec_properties, execution_id, self._context.pipeline_run_id or '')
    written = render.write(facts, card.uri)
    if inputs['pushed_model'].get_int_custom_property('pushed') == 1:
      beside = card_folder(facts.pushed_to)
      fileio.makedirs(beside)
      for name, path in list(written.items()):
        written[name] = os.path.join(beside, name)
        fileio.copy(path, written[name], overwrite=True)
    card.set_string_custom_property('html', written[render.HTML_FILE])
    card.set_string_custom_property('markdown', written[render.MARKDOWN_FILE])


def gather(inputs: Dict[str, types.Artifact], exec_properties: Dict[str, Any],
           execution_id: str, pipeline_run_id: str) -> card_facts.CardFacts:
  settings = inputs['data_settings']
  # The settings both Trainers trained with: the flags' and those chosen for the data.
  config = data_settings.apply(
      ModelConfig.from_dict(json.loads(exec_properties['model_config'])),
      settings_gen.read_values(settings.uri)).to_dict()
  pushed = inputs['pushed_model']
  evaluation_uri = inputs['evaluation'].uri
  metrics, top_k = card_facts.metrics(evaluation_uri)
  kind = config.get('kind', '')
  summary = card_facts.KIND_SUMMARIES.get(kind, kind)
  if exec_properties.get('refit'):
    summary += ('; the Evaluator judged its gated twin (the same settings trained without '
                'the eval split), and this model is that twin trained again on train + eval')
  examples = inputs['examples']
  span = examples.span if 'span' in examples.mlmd_artifact.properties else 0
  return card_facts.CardFacts(
      model_name=exec_properties['model_name'],
      version=pushed.get_string_custom_property('pushed_version') or 'not pushed',
      pushed_to=pushed.get_string_custom_property('pushed_destination') or '',
      kind=kind, summary=summary, config=card_facts.shown_config(config),
      data_settings=settings_gen.reasons(settings),
      data_profile=settings_gen.profile_recorded(settings).describe(),
      vocabulary_sizes=card_facts.vocabulary_sizes(inputs['transform_graph'].uri),
      training_data=examples.uri + (f' (span {span})' if span else ''),
      blessed=inputs['blessing'].get_int_custom_property('blessed') == 1,
      failed_thresholds=failed_thresholds(evaluation_uri),
      metrics=metrics, top_k=top_k, segments=card_facts.segments(evaluation_uri),
      training_curve=card_facts.training_curve(inputs['model_run'].uri),
      signatures=card_facts.signatures(os.path.join(inputs['model'].uri, 'Format-Serving')),
      lineage=_lineage(inputs), execution_id=execution_id, pipeline_run_id=pipeline_run_id)


class ModelCard(base_component.BaseComponent):
  """Writes a model card for the pushed model (module docstring)."""
  SPEC_CLASS = ModelCardSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, model, model_run, evaluation, blessing, pushed_model, transform_graph,
               examples, data_settings, model_name: str, model_config: Dict[str, Any],
               refit: bool):
    super().__init__(ModelCardSpec(
        model=model, model_run=model_run, evaluation=evaluation, blessing=blessing,
        pushed_model=pushed_model, transform_graph=transform_graph, examples=examples,
        data_settings=data_settings,
        model_name=model_name, model_config=json.dumps(model_config, sort_keys=True),
        refit=int(refit), model_card=types.Channel(type=ModelCardArtifact)))
