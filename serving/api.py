"""TF Serving's calls (model status, model metadata, predict, and classify, regress and
multi-inference over tf.Examples: serving/inference.py), independent of transport.

The REST and gRPC front ends translate their requests into these calls and the returned protos
(from the tensorflow-serving-api package) or numpy arrays back into their own formats, so both
answer with the same content, codes and messages. Both also go through the same bounds on a
predict request: its rows and values per row (checked before any work) and its encoded response.
"""
import math
from typing import Mapping, Optional, Sequence, Tuple

from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, inference_pb2, input_pb2, model_pb2,
                                     regression_pb2)

from serving import errors, inference
from serving.models import Arrays, LoadedVersion, ModelManager, VersionChoice

# ModelVersionStatus.State by name; error codes share numbering with tensorflow.error.Code.
_STATE = get_model_status_pb2.ModelVersionStatus.State

# Rows per request: 100,000 users in one request made the server allocate ~6 GB for 32 s.
DEFAULT_MAX_REQUEST_ROWS = 1000
# Values per row (a history's movies): the sequential model's work grows with the history's
# length as with the rows, and 1,000 rows within the row limit could each hold any number.
DEFAULT_MAX_VALUES_PER_ROW = 1000
# As the request limits (16 MiB); 1,000 users' top 100 is about 5.4 MB of JSON.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 2**20


def requested_version(model_spec: model_pb2.ModelSpec) -> VersionChoice:
  """What a ModelSpec names: a version number, a version label, or neither (the latest)."""
  if model_spec.WhichOneof('version_choice') == 'version_label':
    return model_spec.version_label
  return model_spec.version.value if model_spec.HasField('version') else None


class ServingApi:
  """Model status, metadata and predict over a ModelManager's loaded versions.

  max_request_rows: the most rows (users, histories) one predict request may hold.
  max_values_per_row: the most values in one row of an input (a history's movies).
  max_response_bytes: the largest encoded predict response (JSON or PredictResponse).
  """

  def __init__(self, manager: ModelManager, max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS,
               max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
               max_values_per_row: int = DEFAULT_MAX_VALUES_PER_ROW):
    self.manager = manager
    self.max_request_rows = max_request_rows
    self.max_response_bytes = max_response_bytes
    self.max_values_per_row = max_values_per_row

  def model_status(self, name: str, version: VersionChoice = None
                   ) -> get_model_status_pb2.GetModelStatusResponse:
    """version: None (every version), a number, or a label (its version)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    model = self.manager.model(name)
    for status in model.status(self.manager.version_of(name, version)):
      entry = response.model_version_status.add(version=status.version,
                                                state=_STATE.Value(status.state))
      entry.status.error_code = status.error_code.value[0]
      entry.status.error_message = status.error_message
    return response

  def model_metadata(self, name: str, version: VersionChoice = None,
                     fields: Sequence[str] = ('signature_def',)
                     ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    unsupported = set(fields) - {'signature_def'}
    if unsupported:
      raise errors.invalid_argument(
          f'Metadata field {sorted(unsupported)[0]} is not supported (only signature_def)')
    loaded = self.manager.get(name, version)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = loaded.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for signature_name, signature_def in loaded.signature_defs.items():
      signature_map.signature_def[signature_name].CopyFrom(signature_def)
    response.metadata['signature_def'].Pack(signature_map)
    return response

  def resolve(self, name: str, version: VersionChoice = None) -> LoadedVersion:
    """The version a request runs on (version: None for the latest, a number, or a label); a
    request decodes and runs on this one object, so a version swap or a label move in between
    cannot mix two versions."""
    return self.manager.get(name, version)

  def check_rows(self, shapes: Mapping[str, Sequence[int]]) -> None:
    """Refuses a request whose inputs hold more than max_request_rows rows (dimension 0), or
    more than max_values_per_row values in a row (the product of the other dimensions).

    Takes shapes, not arrays, so gRPC can check the shapes a TensorProto claims before
    building its arrays: the model's work and memory grow with the rows, and without a bound
    one 0.6 MB request for 100,000 users took 32 s and 6 GB. They grow with a row's width too
    (a history [batch, length]), so both bounds together bound a request's values.
    """
    for name, shape in sorted(shapes.items()):
      if len(shape) and shape[0] > self.max_request_rows:
        raise errors.invalid_argument(
            f'input {name} has {shape[0]} rows, over the limit of {self.max_request_rows} '
            'rows per request (--max_request_rows): split the request, or raise the limit')
      width = math.prod(shape[1:])
      if len(shape) > 1 and width > self.max_values_per_row:
        raise errors.invalid_argument(
            f'input {name} has {width} values per row, over the limit of '
            f'{self.max_values_per_row} values per row (--max_values_per_row): send the most '
            'recent movies only, or raise the limit')

  def check_response_bytes(self, size: int, rows: int) -> None:
    """Refuses a predict response over max_response_bytes as encoded by its transport."""
    if size > self.max_response_bytes:
      per_row = f' (about {size // rows} bytes a row)' if rows else ''
      raise errors.invalid_argument(
          f'the response is {size} bytes{per_row}, over the limit of {self.max_response_bytes} '
          'bytes (--max_response_bytes): ask for fewer rows per request, or raise the limit')

  def predict(self, loaded: LoadedVersion, signature_name: str, inputs: Arrays,
              output_filter: Sequence[str] = ()) -> Tuple[model_pb2.ModelSpec, Arrays]:
    """Runs a signature on inputs within the row limits; (the answering spec, outputs)."""
    self.check_rows({name: array.shape for name, array in inputs.items()})
    used_signature, outputs = loaded.predict(signature_name, inputs, output_filter)
    spec = model_pb2.ModelSpec(name=loaded.name, signature_name=used_signature)
    spec.version.value = loaded.version
    return spec, outputs

  def _check_examples(self, request_input: input_pb2.Input) -> None:
    """The row limit, on the examples of a classify, regress or multi-inference request."""
    kind = request_input.WhichOneof('kind')
    self.check_rows({'examples': [len(getattr(request_input, kind).examples) if kind else 0]})

  def classify(self, loaded: LoadedVersion, request: classification_pb2.ClassificationRequest
               ) -> classification_pb2.ClassificationResponse:
    self._check_examples(request.input)
    return inference.classify(loaded, request)

  def regress(self, loaded: LoadedVersion, request: regression_pb2.RegressionRequest
              ) -> regression_pb2.RegressionResponse:
    self._check_examples(request.input)
    return inference.regress(loaded, request)

  def multi_inference(self, request: inference_pb2.MultiInferenceRequest
                      ) -> inference_pb2.MultiInferenceResponse:
    """Runs on the model and version the first task names (as TF Serving does)."""
    inference.check_tasks(request.tasks)
    self._check_examples(request.input)
    spec = request.tasks[0].model_spec
    return inference.multi_inference(self.resolve(spec.name, requested_version(spec)), request)
