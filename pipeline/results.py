"""Reads what the last pipeline run produced back from MLMD: metrics, blessing, pushed model,
and how long each component took; and closes the executions a run that died left open."""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from components.eval_config import evaluation_metrics, failed_thresholds
from components.model.config import EARLY_STOPPING_K, FIT_FILE
from components.model.data_settings import HYPERPARAMETERS_FILE
from components.settings_gen import read_values as read_settings
from components.model_card import HTML_FILE as MODEL_CARD_FILE, card_folder
from components.model_card.component import ModelCardArtifact


@dataclasses.dataclass
class RunResults:
  """The outcome of the latest run, for the CLI to print and tests to check.

  component_windows: (component id, wall seconds, start, end epoch seconds) in execution order;
    cached executions take ~0 seconds.
  outputs: (component id, output artifact type) -> the artifact's URI.
  """
  metrics: Dict[str, float]
  baseline_metrics: Dict[str, float]  # the latest blessed model's, when there was one
  blessed: Optional[bool]
  failed_thresholds: List[str]
  pushed: bool
  pushed_path: Optional[str]
  already_served: bool  # pushed_path held this model already: nothing was copied
  rollout: Optional[str]  # what the push did to the labels of models_config (a sentence)
  models_config: Optional[str]
  component_windows: List[Tuple[str, float, float, float]]
  outputs: Dict[Tuple[str, str], str]

  @property
  def component_seconds(self) -> List[Tuple[str, float]]:
    return [(component, seconds) for component, seconds, _, _ in self.component_windows]

  @property
  def model_uri(self) -> Optional[str]:
    return self.outputs.get(('Trainer', 'Model'))

  def fits(self, trainer: str = 'Trainer') -> List[Dict[str, Any]]:
    """What each member's fit did in a Trainer ('Trainer', or the 'Refit'): its FIT_FILE, or
    none (a model trained before it was written, or no such Trainer in the run)."""
    model = self.outputs.get((trainer, 'Model'))
    path = os.path.join(model, FIT_FILE) if model else None
    if not path or not os.path.exists(path):
      return []
    with open(path) as file:
      return json.load(file)

  def data_settings(self) -> Dict[str, Any]:
    """The settings SettingsGen chose for the data (components/settings_gen.py): name ->
    value; none when the run had no SettingsGen."""
    folder = self.outputs.get(('SettingsGen', 'HyperParameters'))
    if not folder or not os.path.exists(os.path.join(folder, HYPERPARAMETERS_FILE)):
      return {}
    return read_settings(folder)

  @property
  def evaluation_uri(self) -> Optional[str]:
    return self.outputs.get(('Evaluator', 'ModelEvaluation'))

  @property
  def model_card(self) -> Optional[str]:
    """The pushed model's card (HTML), beside its version; None when nothing was pushed."""
    if not self.pushed_path or ('ModelCard', ModelCardArtifact.TYPE_NAME) not in self.outputs:
      return None
    return os.path.join(card_folder(self.pushed_path), MODEL_CARD_FILE)


def describe_fit(fit: Dict[str, Any]) -> str:
  """One member's fit in words: '12 epochs, the best 9th (validation top-10 0.2113)'."""
  epochs = f'{fit["epochs"]} epoch{"s" if fit["epochs"] != 1 else ""}'
  if 'best_epoch' not in fit:
    return epochs
  metric = f'val_top_{EARLY_STOPPING_K}_accuracy'
  return (f'{epochs}, stopped early, kept epoch {fit["best_epoch"]} (validation '
          f'top-{EARLY_STOPPING_K} {fit[metric]:.4f})' if fit['best_epoch'] < fit['epochs'] else
          f'{epochs}, kept the last (validation top-{EARLY_STOPPING_K} {fit[metric]:.4f})')


def _int_property(artifact, name: str) -> Optional[int]:
  if name in artifact.custom_properties:
    return artifact.custom_properties[name].int_value
  return None


def _string_property(artifact, name: str) -> Optional[str]:
  if name in artifact.custom_properties:
    return artifact.custom_properties[name].string_value
  return None


def _store(metadata_path: str) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


def _component_names(store: metadata_store.MetadataStore,
                     executions: List[metadata_store_pb2.Execution]) -> List[str]:
  """Each execution's component id (its TFX node context's name after the pipeline's), or its
  execution type's name when it has no node context."""
  node_type = [context_type.id for context_type in store.get_context_types()
               if context_type.name == 'node']
  types = {execution_type.id: execution_type.name
           for execution_type in store.get_execution_types()}
  names = []
  for execution in executions:
    node = [context.name for context in store.get_contexts_by_execution(execution.id)
            if context.type_id in node_type]
    names.append(node[0].split('.', 1)[-1] if node else types.get(execution.type_id,
                                                                 str(execution.type_id)))
  return names


ACTIVE_STATES = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)


def fail_abandoned_executions(metadata_path: str) -> List[str]:
  """Marks FAILED the executions still NEW or RUNNING in an MLMD sqlite file; returns their
  component ids.

  Only for a caller that holds the workdir (pipeline/cli.py workdir_lock): then no run is
  live, and those executions were left by a run whose process died (killed, out of memory).
  TFX's local runner ignores them (each run has its own pipeline_run context, and only
  successful executions are cached), but readers of MLMD would see them running forever.
  """
  if not os.path.exists(metadata_path):
    return []
  store = _store(metadata_path)
  abandoned = [execution for execution in store.get_executions()
               if execution.last_known_state in ACTIVE_STATES]
  for execution in abandoned:
    execution.last_known_state = metadata_store_pb2.Execution.FAILED
  if abandoned:
    store.put_executions(abandoned)
  return _component_names(store, abandoned)


def latest_run_results(metadata_path: str) -> RunResults:
  """The latest pipeline run recorded in an MLMD sqlite file; cached executions count."""
  store = _store(metadata_path)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    raise FileNotFoundError(f'no pipeline run recorded in {metadata_path}')
  latest_run = max(runs, key=lambda context: context.id)
  executions = sorted(store.get_executions_by_context(latest_run.id), key=lambda e: e.id)
  types = {artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()}

  component_windows, artifacts_by_output = [], {}
  for execution, component in zip(executions, _component_names(store, executions)):
    start = execution.create_time_since_epoch / 1e3
    end = execution.last_update_time_since_epoch / 1e3
    component_windows.append((component, end - start, start, end))
    output_ids = [event.artifact_id for event in store.get_events_by_execution_ids([execution.id])
                  if event.type == metadata_store_pb2.Event.OUTPUT]
    for artifact in store.get_artifacts_by_id(output_ids):
      artifacts_by_output[(component, types[artifact.type_id])] = artifact

  evaluation = artifacts_by_output.get(('Evaluator', 'ModelEvaluation'))
  blessing = artifacts_by_output.get(('Evaluator', 'ModelBlessing'))
  pushed_model = artifacts_by_output.get(('Pusher', 'PushedModel'))
  pushed = bool(pushed_model and _int_property(pushed_model, 'pushed'))
  return RunResults(
      metrics=evaluation_metrics(evaluation.uri, 'candidate') if evaluation else {},
      baseline_metrics=evaluation_metrics(evaluation.uri, 'baseline') if evaluation else {},
      blessed=None if blessing is None else bool(_int_property(blessing, 'blessed')),
      failed_thresholds=failed_thresholds(evaluation.uri) if evaluation else [],
      pushed=pushed,
      pushed_path=(pushed_model.custom_properties['pushed_destination'].string_value
                   if pushed else None),
      already_served=bool(pushed and _int_property(pushed_model, 'already_served')),
      rollout=_string_property(pushed_model, 'rollout') if pushed else None,
      models_config=_string_property(pushed_model, 'models_config') if pushed else None,
      component_windows=component_windows,
      outputs={key: artifact.uri for key, artifact in artifacts_by_output.items()})
