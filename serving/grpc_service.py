"""TF Serving's gRPC services over a ServingApi, on the tensorflow-serving-api package's stubs.

tensorflow.serving.PredictionService: Predict, Classify, Regress, MultiInference (the last
three over tf.Examples: serving/inference.py) and GetModelMetadata.
tensorflow.serving.ModelService: GetModelStatus, and HandleReloadConfigRequest (a new
ModelServerConfig, applied as a re-read models.config is: TF Serving's label rules, nothing
changed on an error). A ModelSpec may name a version or a version label.

A Predict request's size is checked from the shapes its TensorProtos claim, before they are
turned into arrays: a TensorProto may hold one value and claim a billion elements (TensorFlow
fills in the rest), so a few bytes on the wire could otherwise allocate gigabytes.
"""
import math
import os
import time
from concurrent import futures
from typing import Dict, List, Optional, Sequence, Tuple, Union

import grpc
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import config_files, errors, monitoring, tensor_protos
from serving.api import ServingApi, requested_version
from serving.models import LabelError, dtype_name

DEFAULT_MAX_MESSAGE_BYTES = 16 * 2**20
# TF Serving's --grpc_max_threads default: 4 per schedulable CPU.
DEFAULT_MAX_THREADS = 4 * (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                           else os.cpu_count() or 1)


def _claimed_shapes(request: predict_pb2.PredictRequest) -> Dict[str, List[int]]:
  """Each input's shape as its TensorProto states it (not yet checked against its values)."""
  shapes = {}
  for name, tensor in request.inputs.items():
    dims = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.tensor_shape.unknown_rank or any(size < 0 for size in dims):
      raise errors.invalid_argument(f'input {name}: a TensorProto needs a known shape, got '
                                    f'{"none" if tensor.tensor_shape.unknown_rank else dims}')
    shapes[name] = dims
  return shapes


def _check_elements(shapes: Dict[str, List[int]], max_message_bytes: int) -> None:
  """Refuses a shape with more elements than a message within the limit has bytes: a real
  tensor needs a byte per element at least, so only a filled-in claim has more."""
  for name, dims in sorted(shapes.items()):
    elements = math.prod(dims)
    if elements > max_message_bytes:
      raise errors.invalid_argument(
          f'input {name}: shape {dims} claims {elements} elements, more than the '
          f'{max_message_bytes} bytes a request may have (--grpc_max_message_bytes)')


def _abort(context: grpc.ServicerContext, error: Exception):
  if isinstance(error, errors.ServingError):
    context.abort(error.code, error.message)
  context.abort(grpc.StatusCode.INTERNAL, f'internal error: {error}')


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, api: ServingApi, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
               metrics: Optional[monitoring.Metrics] = None):
    self.api = api
    self.max_message_bytes = max_message_bytes
    self.metrics = metrics or monitoring.Metrics()

  def _counted(self, api: str, model_name: str, answer, context):
    """answer(), counted in the metrics as TF Serving counts it (API as the method's name,
    entrypoint GRPC); a failure becomes the call's status, never a crash."""
    started = time.monotonic()
    try:
      response = answer()
    except Exception as error:  # noqa: BLE001
      code = error.code if isinstance(error, errors.ServingError) else grpc.StatusCode.INTERNAL
      self.metrics.record_request(model_name, api, 'GRPC', code.name, time.monotonic() - started)
      _abort(context, error)
    self.metrics.record_request(model_name, api, 'GRPC', 'OK', time.monotonic() - started)
    return response

  def Predict(self, request, context):  # noqa: N802  (gRPC method names)
    return self._counted('Predict', request.model_spec.name, lambda: self._predict(request),
                         context)

  def Classify(self, request, context):  # noqa: N802
    return self._counted('Classify', request.model_spec.name, lambda: self._bounded(
        self.api.classify(self._resolve(request.model_spec), request)), context)

  def Regress(self, request, context):  # noqa: N802
    return self._counted('Regress', request.model_spec.name, lambda: self._bounded(
        self.api.regress(self._resolve(request.model_spec), request)), context)

  def MultiInference(self, request, context):  # noqa: N802
    name = request.tasks[0].model_spec.name if request.tasks else ''
    return self._counted('MultiInference', name, lambda: self._bounded(
        self.api.multi_inference(request)), context)

  def _resolve(self, model_spec):
    return self.api.resolve(model_spec.name, requested_version(model_spec))

  def _bounded(self, response):
    """The response, within the api's max_response_bytes."""
    self.api.check_response_bytes(response.ByteSize(), 0)
    return response

  def _predict(self, request) -> predict_pb2.PredictResponse:
    shapes = _claimed_shapes(request)
    self.api.check_rows(shapes)
    _check_elements(shapes, self.max_message_bytes)
    loaded = self._resolve(request.model_spec)
    _, signature_def = loaded.signature(request.model_spec.signature_name)
    inputs = {}
    for name, tensor in request.inputs.items():
      expected = signature_def.inputs.get(name)
      if expected is not None and tensor.dtype != expected.dtype:
        raise errors.invalid_argument(
            f'input {name}: expects {dtype_name(expected.dtype)} but '
            f'{dtype_name(tensor.dtype)} is provided')
      try:
        inputs[name] = tensor_protos.read(tensor)
      except (TypeError, ValueError) as error:
        raise errors.invalid_argument(f'input {name}: malformed TensorProto: {error}') from None
    spec, outputs = self.api.predict(loaded, request.model_spec.signature_name, inputs,
                                     list(request.output_filter))
    response = predict_pb2.PredictResponse(model_spec=spec)
    for name, array in outputs.items():
      tensor_protos.write(array, response.outputs[name])
    rows = max((array.shape[0] for array in inputs.values() if array.ndim), default=0)
    self.api.check_response_bytes(response.ByteSize(), rows)
    return response

  def GetModelMetadata(self, request, context):  # noqa: N802
    try:
      if not request.metadata_field:
        raise errors.invalid_argument('GetModelMetadataRequest must specify at least one '
                                      'metadata_field')
      spec = request.model_spec
      return self.api.model_metadata(spec.name, requested_version(spec),
                                     list(request.metadata_field))
    except Exception as error:  # noqa: BLE001
      _abort(context, error)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, api: ServingApi, reload_refusal: Optional[str] = None):
    """reload_refusal: why HandleReloadConfigRequest is refused (FAILED_PRECONDITION), or
    None to apply it."""
    self.api = api
    self.reload_refusal = reload_refusal

  def GetModelStatus(self, request, context):  # noqa: N802
    try:
      return self.api.model_status(request.model_spec.name, requested_version(request.model_spec))
    except Exception as error:  # noqa: BLE001
      _abort(context, error)

  def HandleReloadConfigRequest(self, request, context):  # noqa: N802
    """Serves exactly the request's models from now on (as TF Serving: the response's status
    and the call's both carry an error, and an error changes nothing). Refused with
    FAILED_PRECONDITION where the server has several processes (reload_refusal)."""
    if self.reload_refusal:
      _abort(context, errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                          self.reload_refusal))
    try:
      sources = config_files.sources_of(request.config, 'ReloadConfigRequest.config')
      self.api.manager.configure(sources)
    except LabelError as error:
      _abort(context, errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION, str(error)))
    except ValueError as error:
      _abort(context, errors.invalid_argument(str(error)))
    except Exception as error:  # noqa: BLE001
      _abort(context, error)
    return model_management_pb2.ReloadConfigResponse()


def parse_channel_arguments(text: str) -> List[Tuple[str, Union[int, str]]]:
  """TF Serving's --grpc_channel_arguments: 'key=value,key=value'; a value that reads as an
  int is passed as one, as TF Serving does (grpc.max_connection_age_ms=2000)."""
  arguments = []
  for item in filter(None, (part.strip() for part in text.split(','))):
    key, equals, value = item.partition('=')
    if not equals or not key:
      raise ValueError(f'--grpc_channel_arguments: expected key=value, got {item!r}')
    try:
      arguments.append((key, int(value)))
    except ValueError:
      arguments.append((key, value))
  return arguments


def make_grpc_server(api: ServingApi, address: str, max_workers: int = DEFAULT_MAX_THREADS,
                     max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                     channel_arguments: Sequence[Tuple[str, Union[int, str]]] = (),
                     socket_path: str = '',
                     metrics: Optional[monitoring.Metrics] = None, reuse_port: bool = False,
                     reload_refusal: Optional[str] = None) -> grpc.Server:
  """A gRPC server with both services on address ('host:port') and, with socket_path, on that
  Unix socket too; not started yet. reuse_port: bind with SO_REUSEPORT, beside the other
  processes of a supervisor (serving/processes.py); otherwise a port in use is an error.

  Requests over max_message_bytes are refused by gRPC itself with RESOURCE_EXHAUSTED. Sending
  is left unbounded (gRPC's default): Predict answers within the api's max_response_bytes,
  with an error that names it, and status and metadata are small. channel_arguments
  (--grpc_channel_arguments) come first, so they win over these defaults.
  """
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                       options=[*channel_arguments,
                                ('grpc.max_receive_message_length', max_message_bytes),
                                ('grpc.so_reuseport', int(reuse_port))])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(api, max_message_bytes, metrics), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelService(api, reload_refusal), server)
  try:
    port = server.add_insecure_port(address)
  except RuntimeError:  # newer grpcio raises where older ones returned 0
    port = 0
  if port == 0:
    raise OSError(f'cannot listen on {address} for gRPC (is the port in use?)')
  if socket_path:
    try:
      bound = server.add_insecure_port(f'unix:{socket_path}')
    except RuntimeError:
      bound = 0
    if bound == 0:
      raise OSError(f'cannot listen on the Unix socket {socket_path} for gRPC (is its folder '
                    'there and writable?)')
  return server
