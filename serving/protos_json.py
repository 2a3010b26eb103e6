"""TF Serving's JSON forms of its protos, shared by the REST server and the clients.

Field names as in the .proto files, defaults printed (TF Serving's REST API writes
`"error_message": ""`), and model metadata with its packed SignatureDefMap unpacked.
"""
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2


def proto_json(message) -> dict:
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   including_default_value_fields=True)


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
  """{'model_spec': ..., 'metadata': {'signature_def': {'signature_def': {name: ...}}}}."""
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  response.metadata['signature_def'].Unpack(signature_map)
  return {'model_spec': proto_json(response.model_spec),
          'metadata': {'signature_def': proto_json(signature_map)}}
