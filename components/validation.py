"""A gate after ExampleValidator: TFX records anomalies but lets the run go on; we stop it."""
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_FILE = 'SchemaDiff.pb'


class DataAnomaliesError(RuntimeError):
  """The data does not match the schema; the message lists each feature and why."""


def describe_anomalies(anomalies_artifact) -> list:
  """'split: feature: reason' for every anomaly the validator wrote, in every split."""
  problems = []
  for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
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
