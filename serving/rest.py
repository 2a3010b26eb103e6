"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) over a ServingApi.

    GET  /v1/models/{name}[/versions/{version}]             model status
    GET  /v1/models/{name}[/versions/{version}]/metadata    signature defs
    POST /v1/models/{name}[/versions/{version}]:predict     row ("instances") or columnar
                                                            ("inputs") request
Errors answer `{"error": "..."}` with TF Serving's HTTP status for the error's code.
"""
import base64
import http.server
import json
import re
import socketserver
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving import errors
from serving.api import ServingApi
from serving.models import Arrays
from serving.protos_json import metadata_json, proto_json

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
# Bodies over the limit are read and dropped up to this size (so the client gets its 400
# instead of a reset connection); past it the connection is closed unread.
_MAX_DRAIN_BYTES = 256 * 2**20

_VERSION_OR_LABEL = r'(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?'
_PREDICT = re.compile(r'(?i)/v1/models/([^/:]+)' + _VERSION_OR_LABEL + r':(classify|regress|predict)')
_METADATA = re.compile(r'(?i)/v1/models/([^/:]+)' + _VERSION_OR_LABEL + r'/metadata')
_STATUS = re.compile(r'(?i)/v1/models/([^/:]+)' + _VERSION_OR_LABEL)


def _version(text: Optional[str], label: Optional[str]) -> Optional[int]:
  if label is not None:
    raise errors.invalid_argument(f'Unrecognized servable version label: {label} '
                                  '(this server serves versions by number only)')
  if text is None:
    return None
  version = int(text)
  if version >= 2**63:
    raise errors.invalid_argument(f'version {text} is out of range')
  return version


# --- JSON <-> tensors, as TF Serving's json_tensor does it ------------------------------------

def _flatten(value, where: str) -> Tuple[Tuple[int, ...], List]:
  """(shape, leaves) of nested JSON lists; ragged lists are an error."""
  if not isinstance(value, list):
    return (), [value]
  if not value:
    return (0,), []
  parts = [_flatten(item, where) for item in value]
  if len({shape for shape, _ in parts}) > 1:
    raise errors.invalid_argument(f'{where}: lists of different lengths (ragged tensors are '
                                  'not supported)')
  return (len(value),) + parts[0][0], [leaf for _, leaves in parts for leaf in leaves]


def _leaf(value, dtype: tf.DType, where: str):
  if dtype == tf.string:
    if isinstance(value, str):
      return value.encode()
    if isinstance(value, dict) and set(value) == {'b64'} and isinstance(value['b64'], str):
      try:
        return base64.b64decode(value['b64'], validate=True)
      except ValueError:
        raise errors.invalid_argument(f'{where}: "b64" value is not valid base64') from None
  elif dtype.is_bool:
    if isinstance(value, bool):
      return value
  elif dtype.is_integer:
    if isinstance(value, int) and not isinstance(value, bool):
      if not dtype.min <= value <= dtype.max:
        raise errors.invalid_argument(f'{where}: {value} is out of range for {dtype.name}')
      return value
  elif dtype.is_floating:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return value
  else:
    raise errors.invalid_argument(f'{where}: inputs of type {dtype.name} are not supported '
                                  'over REST')
  raise errors.invalid_argument(
      f'{where}: expected {"a string" if dtype == tf.string else dtype.name}, '
      f'got {json.dumps(value)[:80]}')


def json_to_array(value, dtype: tf.DType, where: str) -> np.ndarray:
  shape, leaves = _flatten(value, where)
  converted = [_leaf(leaf, dtype, where) for leaf in leaves]
  if dtype == tf.string:
    array = np.empty(len(converted), dtype=object)
    array[:] = converted
  else:
    array = np.array(converted, dtype=dtype.as_numpy_dtype)
  return array.reshape(shape)


def parse_predict_request(body: bytes) -> Tuple[dict, str]:
  """The request object and its signature_name ('' for the default)."""
  try:
    request = json.loads(body)
  except (ValueError, RecursionError) as error:
    raise errors.invalid_argument(f'JSON Parse error: {error}') from None
  if not isinstance(request, dict):
    raise errors.invalid_argument('JSON Value: the request must be a JSON object')
  signature_name = request.get('signature_name', '')
  if not isinstance(signature_name, str):
    raise errors.invalid_argument('"signature_name" must be a string')
  return request, signature_name


def decode_predict_request(request: dict, signature_def: meta_graph_pb2.SignatureDef,
                           ) -> Tuple[str, Arrays]:
  """A predict request -> ('row' or 'columnar', inputs as arrays of the signature's dtypes)."""
  if ('instances' in request) == ('inputs' in request):
    raise errors.invalid_argument(
        'Missing \'inputs\' or \'instances\' key' if 'instances' not in request
        else 'Not both \'inputs\' and \'instances\' can be set')
  dtypes = {name: tf.dtypes.as_dtype(info.dtype) for name, info in signature_def.inputs.items()}
  single = next(iter(dtypes)) if len(dtypes) == 1 else None
  try:
    if 'instances' in request:
      instances = request['instances']
      if not isinstance(instances, list) or not instances:
        raise errors.invalid_argument('"instances" must be a non-empty JSON array')
      columns: Dict[str, list] = {name: [] for name in dtypes}
      for row, instance in enumerate(instances):
        if single and not (isinstance(instance, dict) and single in instance):
          instance = {single: instance}
        if not isinstance(instance, dict) or set(instance) != set(dtypes):
          raise errors.invalid_argument(
              f'instances[{row}]: expected an object with the inputs '
              f'{sorted(dtypes)}, got {json.dumps(instance)[:120]}')
        for name in dtypes:
          columns[name].append(instance[name])
      return 'row', {name: json_to_array(values, dtypes[name], f'instances[*].{name}')
                     for name, values in columns.items()}
    inputs = request['inputs']
    if single and not (isinstance(inputs, dict) and single in inputs):
      inputs = {single: inputs}
    if not isinstance(inputs, dict):
      raise errors.invalid_argument(f'"inputs" must be an object with the inputs {sorted(dtypes)}')
    unknown = set(inputs) - set(dtypes)
    if unknown:
      raise errors.invalid_argument(f'inputs: unknown input {sorted(unknown)[0]!r}; the '
                                    f'signature takes {sorted(dtypes)}')
    return 'columnar', {name: json_to_array(value, dtypes[name], f'inputs.{name}')
                        for name, value in inputs.items()}
  except RecursionError:
    raise errors.invalid_argument('JSON Value: nested too deeply') from None


def _to_json(value, name: str):
  if isinstance(value, list):
    return [_to_json(item, name) for item in value]
  if isinstance(value, bytes):
    if not name.endswith('_bytes'):
      try:
        return value.decode()
      except UnicodeDecodeError:
        pass
    return {'b64': base64.b64encode(value).decode()}
  return value


def encode_predict_response(layout: str, outputs: Arrays) -> dict:
  """TF Serving's response: {"predictions": [...]} for row requests, {"outputs": ...} else."""
  as_lists = {name: _to_json(array.tolist(), name) for name, array in outputs.items()}
  single = len(as_lists) == 1
  if layout == 'columnar':
    return {'outputs': next(iter(as_lists.values())) if single else as_lists}
  batch_sizes = {array.shape[0] if array.ndim else None for array in outputs.values()}
  if len(batch_sizes) != 1 or None in batch_sizes:
    raise errors.invalid_argument('Tensors must have the same batch size (0th dimension) in '
                                  'the row format; use the columnar "inputs" request')
  rows = batch_sizes.pop()
  if single:
    return {'predictions': next(iter(as_lists.values()))}
  return {'predictions': [{name: values[row] for name, values in as_lists.items()}
                          for row in range(rows)]}


# --- HTTP --------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'
  server_version = 'movielens-serving'
  timeout = 60  # idle keep-alive connections are closed, so they cannot pile up
  disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

  def log_message(self, format, *args):  # noqa: A002  (BaseHTTPRequestHandler's signature)
    if self.server.verbose:
      super().log_message(format, *args)

  def _send(self, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    try:
      self.send_response(status)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(body)))
      self.end_headers()
      self.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
      # The client gave up (its timeout) before the answer: nothing to tell it, no traceback.
      self.close_connection = True

  def _send_error(self, error: errors.ServingError) -> None:
    self._send(error.http_status, {'error': error.message})

  def _read_body(self) -> bytes:
    if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
      self.close_connection = True
      raise errors.invalid_argument('chunked request bodies are not supported: send '
                                    'Content-Length')
    try:
      length = int(self.headers.get('Content-Length', '0'))
    except ValueError:
      self.close_connection = True
      raise errors.invalid_argument('Content-Length is not a number') from None
    limit = self.server.max_body_bytes
    if length > limit:
      self.close_connection = True
      remaining = length if length <= _MAX_DRAIN_BYTES else 0
      while remaining > 0:
        chunk = self.rfile.read(min(remaining, 2**20))
        if not chunk:
          break
        remaining -= len(chunk)
      raise errors.invalid_argument(f'request body of {length} bytes is over the limit of '
                                    f'{limit} bytes (--rest_api_max_body_bytes)')
    return self.rfile.read(length)

  def _malformed(self) -> errors.ServingError:
    return errors.not_found(f'Malformed request: {self.command} {self.path}')

  def do_GET(self):  # noqa: N802  (BaseHTTPRequestHandler's naming)
    try:
      api: ServingApi = self.server.api
      path = self.path.split('?')[0]
      match = _METADATA.fullmatch(path)
      if match:
        response = api.model_metadata(match[1], _version(match[2], match[3]))
        return self._send(200, metadata_json(response))
      match = _STATUS.fullmatch(path)
      if match:
        response = api.model_status(match[1], _version(match[2], match[3]))
        return self._send(200, proto_json(response))
      raise self._malformed()
    except errors.ServingError as error:
      self._send_error(error)
    except Exception as error:  # noqa: BLE001  (never let one request take the server down)
      self._send(500, {'error': f'internal error: {error}'})

  def do_POST(self):  # noqa: N802
    try:
      body = self._read_body()
      match = _PREDICT.fullmatch(self.path.split('?')[0])
      if not match:
        raise self._malformed()
      if match[4].lower() != 'predict':
        raise errors.ServingError(errors.grpc.StatusCode.UNIMPLEMENTED,
                                  f'{match[4]} is not supported: these models answer :predict')
      loaded = self.server.api.resolve(match[1], _version(match[2], match[3]))
      request, signature_name = parse_predict_request(body)
      _, signature_def = loaded.signature(signature_name)
      layout, inputs = decode_predict_request(request, signature_def)
      _, outputs = ServingApi.predict(loaded, signature_name, inputs)
      self._send(200, encode_predict_response(layout, outputs))
    except errors.ServingError as error:
      self._send_error(error)
    except Exception as error:  # noqa: BLE001
      self._send(500, {'error': f'internal error: {error}'})

  def do_PUT(self):  # noqa: N802
    self._send_error(self._malformed())

  do_DELETE = do_PATCH = do_PUT


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
  """A thread per connection; keep-alive; closes idle connections after a minute."""
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, address, api: ServingApi, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               verbose: bool = False):
    super().__init__(address, _Handler)
    self.api = api
    self.max_body_bytes = max_body_bytes
    self.verbose = verbose
