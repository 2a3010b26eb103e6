"""Reads what the last pipeline run produced back from MLMD: metrics, blessing, pushed model,
and how long each component took."""
import dataclasses
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata


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
  component_windows: List[Tuple[str, float, float, float]]
  outputs: Dict[Tuple[str, str], str]

  @property
  def component_seconds(self) -> List[Tuple[str, float]]:
    return [(component, seconds) for component, seconds, _, _ in self.component_windows]

  @property
  def model_uri(self) -> Optional[str]:
    return self.outputs.get(('Trainer', 'Model'))

  @property
  def evaluation_uri(self) -> Optional[str]:
    return self.outputs.get(('Evaluator', 'ModelEvaluation'))


def _int_property(artifact, name: str) -> Optional[int]:
  if name in artifact.custom_properties:
    return artifact.custom_properties[name].int_value
  return None


def _metric_values(evaluation_uri: str, model: str) -> Dict[str, float]:
  """Overall metrics of one model of the evaluation: 'candidate' (or '' when it was
  evaluated alone) or 'baseline'; the candidate-minus-baseline diffs are left out."""
  values = {}
  for slice_metrics in tfma.load_metrics(evaluation_uri):
    for key_and_value in slice_metrics.metric_keys_and_values:
      key = key_and_value.key
      if key.is_diff or key.model_name not in ({model, ''} if model == 'candidate' else {model}):
        continue
      if key_and_value.value.HasField('double_value'):
        values[key.name] = key_and_value.value.double_value.value
  return values


def _failed_thresholds(evaluation_uri: str) -> List[str]:
  failures = []
  for slice_result in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
    for metric in slice_result.failures:
      failures.append(f'{metric.metric_key.name}: {metric.message}')
  return failures


def latest_run_results(metadata_path: str) -> RunResults:
  """The latest pipeline run recorded in an MLMD sqlite file; cached executions count."""
  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    raise FileNotFoundError(f'no pipeline run recorded in {metadata_path}')
  latest_run = max(runs, key=lambda context: context.id)
  executions = sorted(store.get_executions_by_context(latest_run.id), key=lambda e: e.id)
  types = {artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()}

  node_type_id = store.get_context_type('node').id
  component_windows, artifacts_by_output = [], {}
  for execution in executions:
    node = [context.name for context in store.get_contexts_by_execution(execution.id)
            if context.type_id == node_type_id]
    component = node[0].split('.', 1)[-1] if node else str(execution.type_id)
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
      metrics=_metric_values(evaluation.uri, 'candidate') if evaluation else {},
      baseline_metrics=_metric_values(evaluation.uri, 'baseline') if evaluation else {},
      blessed=None if blessing is None else bool(_int_property(blessing, 'blessed')),
      failed_thresholds=_failed_thresholds(evaluation.uri) if evaluation else [],
      pushed=pushed,
      pushed_path=(pushed_model.custom_properties['pushed_destination'].string_value
                   if pushed else None),
      component_windows=component_windows,
      outputs={key: artifact.uri for key, artifact in artifacts_by_output.items()})
