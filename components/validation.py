"""Gates after TFX's validators, which record anomalies but let the run go on: AnomaliesGate
stops the run on data that breaks the schema (ExampleValidator), DriftGate on data that drifted
from the previous run's (DistributionValidator), or only warns, by config."""
import os

from absl import logging

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.distribution_validator import component as distribution_validator_component
from tfx import types
from tfx.dsl.components.base import base_component
from tfx.types import artifact_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.utils import json_utils
from tfx.utils import io_utils

ANOMALIES_FILE = 'SchemaDiff.pb'


class _DistributionValidatorSpec(standard_component_specs.DistributionValidatorSpec):
  """TFX's, but with no baseline statistics allowed: the executor then passes the data (the
  first run has nothing to compare with)."""
  INPUTS = {**standard_component_specs.DistributionValidatorSpec.INPUTS,
            standard_component_specs.BASELINE_STATISTICS_KEY: component_spec.ChannelParameter(
                type=standard_artifacts.ExampleStatistics, optional=True)}


class DistributionValidator(base_component.BaseComponent):
  """TFX's DistributionValidator (statistics against baseline statistics, per split pair:
  train against train, eval against eval), running without a baseline too."""
  SPEC_CLASS = _DistributionValidatorSpec
  EXECUTOR_SPEC = distribution_validator_component.DistributionValidator.EXECUTOR_SPEC

  def __init__(self, statistics, baseline_statistics, config):
    keys = standard_component_specs
    super().__init__(spec=_DistributionValidatorSpec(**{
        keys.STATISTICS_KEY: statistics,
        keys.BASELINE_STATISTICS_KEY: baseline_statistics,
        keys.DISTRIBUTION_VALIDATOR_CONFIG_KEY: config,
        keys.INCLUDE_SPLIT_PAIRS_KEY: json_utils.dumps(None),
        keys.ANOMALIES_KEY: types.Channel(type=standard_artifacts.ExampleAnomalies)}))


def drift_config(compared: dict):
  """TFX's DistributionValidatorConfig: {feature name: ('jensen_shannon_divergence' or
  'infinity_norm', threshold)}: past the threshold, the feature is an anomaly."""
  from tfx.proto import distribution_validator_pb2
  config = distribution_validator_pb2.DistributionValidatorConfig()
  for name, (comparator, threshold) in sorted(compared.items()):
    feature = config.default_slice_config.feature.add()
    feature.path.step.append(name)
    getattr(feature.distribution_comparator, comparator).threshold = threshold
  return config


class DataAnomaliesError(RuntimeError):
  """The data does not match the schema; the message lists each feature and why."""


class DataDriftError(RuntimeError):
  """The data drifted from the previous run's; the message names each feature and distance."""


def describe_anomalies(anomalies_artifact, folder: str = 'Split-') -> list:
  """'split: feature: reason' for every anomaly the validator wrote, in every split (in
  <uri>/<folder><split>/: ExampleValidator's Split-train, DistributionValidator's
  SplitPair-train_train)."""
  problems = []
  for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
    path = os.path.join(anomalies_artifact.uri, folder + split, ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(path))
    for feature, info in sorted(anomalies.anomaly_info.items()):
      reasons = '; '.join(reason.description or reason.short_description
                          for reason in info.reason) or info.description
      problems.append(f'{split}: feature {feature!r}: {reasons}')
    if anomalies.HasField('dataset_anomaly_info'):
      problems.append(f'{split}: dataset: {anomalies.dataset_anomaly_info.description}')
  return problems


@tfx.dsl.components.component
def AnomaliesGate(anomalies: tfx.dsl.components.InputArtifact[
    tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
  """Fails the run if ExampleValidator found anomalies, so nothing is trained on bad data."""
  problems = describe_anomalies(anomalies)
  if problems:
    raise DataAnomaliesError(
        'the data does not match the schema (components/schema/schema.pbtxt):\n  '
        + '\n  '.join(problems)
        + f'\nFull report: {anomalies.uri}')


@tfx.dsl.components.component
def DriftGate(anomalies: tfx.dsl.components.InputArtifact[
    tfx.types.standard_artifacts.ExampleAnomalies],
              action: tfx.dsl.components.Parameter[str] = 'stop') -> None:
  """Stops the run (action 'stop') or logs a warning ('warn') if DistributionValidator found
  the data drifted from the previous run's beyond the thresholds. Per split pair
  ('train_train': this run's train split against the previous run's)."""
  problems = describe_anomalies(anomalies, folder='SplitPair-')
  if not problems:
    return
  message = ("the data drifted from the previous run's (--max-rating-drift, --max-id-drift):"
             '\n  ' + '\n  '.join(problems) + f'\nFull report: {anomalies.uri}')
  if action == 'stop':
    raise DataDriftError(message + '\n(--drift-action warn lets such a run go on; for another '
                         'dataset, use another --workdir)')
  logging.warning('%s', message)
