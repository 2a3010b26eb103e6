"""TF Serving's three calls (model status, model metadata, predict), independent of transport.

The REST and gRPC front ends translate their requests into these calls and the returned protos
(from the tensorflow-serving-api package) or numpy arrays back into their own formats, so both
answer with the same content, codes and messages.
"""
from typing import Optional, Sequence, Tuple

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving import errors
from serving.models import Arrays, LoadedVersion, ModelManager

# ModelVersionStatus.State by name; error codes share numbering with tensorflow.error.Code.
_STATE = get_model_status_pb2.ModelVersionStatus.State


class ServingApi:
  """Model status, metadata and predict over a ModelManager's loaded versions."""

  def __init__(self, manager: ModelManager):
    self.manager = manager

  def model_status(self, name: str,
                   version: Optional[int] = None) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in self.manager.model(name).status(version):
      entry = response.model_version_status.add(version=status.version,
                                                state=_STATE.Value(status.state))
      entry.status.error_code = status.error_code.value[0]
      entry.status.error_message = status.error_message
    return response

  def model_metadata(self, name: str, version: Optional[int] = None,
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

  def resolve(self, name: str, version: Optional[int] = None) -> LoadedVersion:
    """The version a request runs on; a request decodes and runs on this one object, so a
    version swap in between cannot mix two versions."""
    return self.manager.get(name, version)

  @staticmethod
  def predict(loaded: LoadedVersion, signature_name: str, inputs: Arrays,
              output_filter: Sequence[str] = ()) -> Tuple[model_pb2.ModelSpec, Arrays]:
    used_signature, outputs = loaded.predict(signature_name, inputs, output_filter)
    spec = model_pb2.ModelSpec(name=loaded.name, signature_name=used_signature)
    spec.version.value = loaded.version
    return spec, outputs
