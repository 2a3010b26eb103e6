"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) over a ServingApi.

    GET  /v1/models/{name}[/versions/{version}]             model status
    GET  /v1/models/{name}[/versions/{version}]/metadata    signature defs
    POST /v1/models/{name}[/versions/{version}]:predict     row ("instances") or columnar
                                                            ("inputs") request
    POST /v1/models/{name}[/versions/{version}]:classify    tf.Examples ("examples", "context":
    POST /v1/models/{name}[/versions/{version}]:regress     serving/json_examples.py)
(/labels/{label} in place of /versions/{version}: the version models.config labels so.)
Errors answer `{"error": "..."}` with TF Serving's HTTP status for the error's code.

Every request's body is read before it is answered (or the connection is closed), so a body
can never be taken for the next request on a keep-alive connection; framing that a proxy in
front could read differently (Transfer-Encoding, a repeated or malformed Content-Length) is
refused and the connection closed.
"""
import base64
import http.server
import json
import re
import socket
import socketserver
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, model_pb2, regression_pb2

from serving import errors, json_examples, monitoring
from serving.api import ServingApi
from serving.models import Arrays, VersionChoice
from serving.protos_json import metadata_json, proto_json

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
DEFAULT_TIMEOUT_MS = 30_000  # TF Serving's --rest_api_timeout_in_ms default
# Connections queued before the server accepts them: gRPC's listener queues as many
# (net.core.somaxconn, 4096); the socketserver default of 5 reset connections under 32 clients.
DEFAULT_LISTEN_BACKLOG = 4096
# Connections served at once, a thread each (TF Serving's --rest_api_num_threads). Past it the
# server stops accepting, and new connections wait in the listen backlog until a thread is free,
# so memory and threads stay bounded however many clients connect.
DEFAULT_NUM_THREADS = 256
# Bodies over the limit are read and dropped up to this size (so the client gets its 400
# instead of a reset connection); past it the connection is closed unread.
_MAX_DRAIN_BYTES = 256 * 2**20

_VERSION_OR_LABEL = r'(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?'
_PREDICT = re.compile(r'(?i)/v1/models/([^/:]+)' + _VERSION_OR_LABEL + r':(classify|regress|predict)')
_METADATA = re.compile(r'(?i)/v1/models/([^/:]+)' + _VERSION_OR_LABEL + r'/metadata')
_STATUS = re.compile(r'(?i)/v1/models/([^/:]+)' + _VERSION_OR_LABEL)


def _version(text: Optional[str], label: Optional[str]) -> VersionChoice:
  """What the path names: /versions/<number>, /labels/<label>, or neither (the latest)."""
  if label is not None:
    return label
  if text is None:
    return None
  # Length first: int() refuses strings of over 4300 digits with a ValueError.
  if len(text) > 19 or int(text) >= 2**63:
    raise errors.invalid_argument(f'version {text[:30]}{"..." if len(text) > 30 else ""} is '
                                  'out of range (versions are int64)')
  return int(text)


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

class _ClientGone(Exception):
  """The client closed its connection mid-request: nobody to answer."""


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'
  server_version = 'movielens-serving'
  disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

  def setup(self):
    # A connection that sends nothing for this long (idle keep-alive, or stalled mid-request)
    # is closed, so such connections cannot pile up.
    self.timeout = self.server.timeout_seconds
    super().setup()

  def log_message(self, format, *args):  # noqa: A002  (BaseHTTPRequestHandler's signature)
    if self.server.verbose:
      super().log_message(format, *args)

  def _send(self, status: int, payload: dict) -> None:
    self._send_body(status, json.dumps(payload).encode())

  def _send_body(self, status: int, body: bytes, content_type: str = 'application/json') -> None:
    try:
      self.send_response(status)
      self.send_header('Content-Type', content_type)
      self.send_header('Content-Length', str(len(body)))
      if self.close_connection:
        self.send_header('Connection', 'close')
      self.end_headers()
      self.wfile.write(body)
    except (ConnectionError, TimeoutError):
      # The client gave up (its timeout) before the answer: nothing to tell it, no traceback.
      self.close_connection = True

  def _send_error(self, error: errors.ServingError) -> None:
    self._send(error.http_status, {'error': error.message})

  def _content_length(self) -> int:
    """The body's length, from the one framing both this server and a proxy read the same way:
    a single Content-Length of digits (none: no body)."""
    if self.headers.defects or self.headers.get_payload() or any(
        '\n' in value for value in self.headers.values()):
      # A header line Python cannot parse (`Content-Length : 5`) would be dropped here, and
      # read by a lenient proxy; a folded line is obsolete HTTP. Neither is guessed at.
      raise errors.invalid_argument('malformed header line (space before the colon, or folded '
                                    'over lines)')
    if 'Transfer-Encoding' in self.headers:
      raise errors.invalid_argument(
          f'Transfer-Encoding ({self.headers["Transfer-Encoding"][:40]}) is not supported: '
          'send the body with a Content-Length')
    values = {value.strip() for value in self.headers.get_all('Content-Length', [])}
    if not values:
      return 0
    text = values.pop()
    if values or not re.fullmatch(r'[0-9]+', text):
      raise errors.invalid_argument('Content-Length must be one number of bytes, got '
                                    f'{", ".join(self.headers.get_all("Content-Length"))[:80]}')
    return int(text) if len(text) <= 18 else 10**18

  def _drain(self, length: int) -> None:
    """Reads and drops a refused body (up to _MAX_DRAIN_BYTES), so the client reads our 400
    instead of a reset connection; past that the connection is closed unread."""
    remaining = length if length <= _MAX_DRAIN_BYTES else 0
    while remaining > 0:
      chunk = self.rfile.read(min(remaining, 2**20))
      if not chunk:
        return
      remaining -= len(chunk)

  def _read_exactly(self, length: int) -> bytes:
    try:
      body = self.rfile.read(length)
    except TimeoutError:
      raise errors.request_timeout(
          f'the request body stopped after fewer than {length} bytes: nothing came for '
          f'{self.server.timeout_seconds:g} s (--rest_api_timeout_in_ms)') from None
    if len(body) < length:
      raise _ClientGone()
    return body

  def _read_body(self) -> bytes:
    """The request's whole body, whatever the method. The connection is closed (after the
    answer) whenever the body was not read to its end, so the next request starts in step."""
    try:
      length = self._content_length()
      limit = self.server.max_body_bytes
      if length > limit:
        self.close_connection = True
        self._drain(length)
        raise errors.invalid_argument(
            f'request body of {length if length < 10**18 else "over 10**18"} bytes is over the '
            f'limit of {limit} bytes (--rest_api_max_body_bytes)')
      return self._read_exactly(length)
    except (errors.ServingError, _ClientGone, ConnectionError, TimeoutError):
      self.close_connection = True
      raise

  def _malformed(self) -> errors.ServingError:
    return errors.not_found(f'Malformed request: {self.command} {self.path}')

  def _answer(self, route: Callable[[bytes], None]) -> None:
    """Reads the body, then lets route(body) send the answer; every failure is a JSON error
    (or, for a client that left, a quiet close), never a traceback. Requests under /v1/ are
    counted in the server's metrics (serving/monitoring.py), the metrics page itself is not."""
    path = self.path.split('?')[0]
    metrics_page = bool(self.server.metrics_path) and path == self.server.metrics_path
    if metrics_page:
      route = self._metrics
    started, status = time.monotonic(), 'OK'
    try:
      route(self._read_body())
    except (_ClientGone, ConnectionError, TimeoutError):  # (TimeoutError: while draining)
      self.close_connection = True
      status = 'CANCELLED'
    except errors.ServingError as error:
      status = error.code.name
      self._send_error(error)
    except Exception as error:  # noqa: BLE001  (never let one request take the server down)
      status = 'INTERNAL'
      self._send(500, {'error': f'internal error: {error}'})
    if not metrics_page and path.lower().startswith('/v1/'):
      self._count(path, status, time.monotonic() - started)

  def _count(self, path: str, status: str, seconds: float) -> None:
    """As TF Serving's REST handler: the model named in the path ('' if none), the API the path
    names in lower case ('' for status and metadata), entrypoint REST."""
    match = _PREDICT.fullmatch(path) or _METADATA.fullmatch(path) or _STATUS.fullmatch(path)
    model = match[1] if match else ''
    api = match[4].lower() if match and match.re is _PREDICT else ''
    self.server.metrics.record_request(model, api, 'REST', status, seconds)

  def _metrics(self, body: bytes) -> None:
    del body
    self._send_body(200, self.server.metrics.exposition().encode(), monitoring.CONTENT_TYPE)

  def _get(self, body: bytes) -> None:
    del body  # read so that it cannot pass for the next request; GET takes none
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

  def _post(self, body: bytes) -> None:
    match = _PREDICT.fullmatch(self.path.split('?')[0])
    if not match:
      raise self._malformed()
    api: ServingApi = self.server.api
    loaded = api.resolve(match[1], _version(match[2], match[3]))
    request, signature_name = parse_predict_request(body)
    method = match[4].lower()
    if method != 'predict':
      return self._classify_or_regress(method, loaded, request, signature_name)
    _, signature_def = loaded.signature(signature_name)
    layout, inputs = decode_predict_request(request, signature_def)
    _, outputs = api.predict(loaded, signature_name, inputs)
    answer = json.dumps(encode_predict_response(layout, outputs)).encode()
    api.check_response_bytes(len(answer), _rows(inputs))
    self._send_body(200, answer)

  def _classify_or_regress(self, method: str, loaded, request: dict, signature_name: str
                           ) -> None:
    api: ServingApi = self.server.api
    request_input = json_examples.input_from_json(request)
    spec = model_pb2.ModelSpec(signature_name=signature_name)
    if method == 'classify':
      result = api.classify(loaded, classification_pb2.ClassificationRequest(
          model_spec=spec, input=request_input)).result
      answer = json_examples.classification_json(result).encode()
    else:
      result = api.regress(loaded, regression_pb2.RegressionRequest(
          model_spec=spec, input=request_input)).result
      answer = json_examples.regression_json(result).encode()
    api.check_response_bytes(len(answer), len(request['examples']))
    self._send_body(200, answer)

  def _unsupported(self, body: bytes) -> None:
    del body  # read, so the connection stays in step for the next request
    raise self._malformed()

  def do_GET(self):  # noqa: N802  (BaseHTTPRequestHandler's naming)
    self._answer(self._get)

  def do_POST(self):  # noqa: N802
    self._answer(self._post)

  def do_PUT(self):  # noqa: N802
    self._answer(self._unsupported)

  do_DELETE = do_PATCH = do_PUT


def _rows(inputs: Arrays) -> int:
  return max((array.shape[0] for array in inputs.values() if array.ndim), default=0)


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
  """A thread per connection, at most num_threads at once; keep-alive; closes connections
  silent for timeout_seconds."""
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, address, api: ServingApi, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               timeout_seconds: float = DEFAULT_TIMEOUT_MS / 1000,
               listen_backlog: int = DEFAULT_LISTEN_BACKLOG, verbose: bool = False,
               num_threads: int = DEFAULT_NUM_THREADS,
               metrics: Optional[monitoring.Metrics] = None, metrics_path: Optional[str] = None,
               reuse_port: bool = False):
    """reuse_port: bind with SO_REUSEPORT, beside the other processes of a supervisor
    (serving/processes.py)."""
    self.request_queue_size = listen_backlog  # socketserver's listen() argument
    self.reuse_port = reuse_port
    self._free_threads = threading.BoundedSemaphore(num_threads)
    super().__init__(address, _Handler)
    self.api = api
    self.max_body_bytes = max_body_bytes
    self.timeout_seconds = timeout_seconds
    self.verbose = verbose
    self.metrics = metrics or monitoring.Metrics()
    self.metrics_path = metrics_path  # None: no metrics page (--monitoring_config_file)

  def server_bind(self):
    if self.reuse_port:  # socketserver's allow_reuse_port arrives in Python 3.11
      self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    super().server_bind()

  def process_request(self, request, client_address):
    """Waits for a free thread before serving the accepted connection (the accept loop waits
    with it, so further connections queue in the listen backlog)."""
    self._free_threads.acquire()
    try:
      super().process_request(request, client_address)
    except BaseException:
      self._free_threads.release()
      raise

  def process_request_thread(self, request, client_address):
    try:
      super().process_request_thread(request, client_address)
    finally:
      self._free_threads.release()

  def handle_error(self, request, client_address):
    """A connection's network failure (reset, timeout) is the client's: one line when
    verbose, no traceback. Anything else is a bug of ours and keeps its traceback."""
    error = sys.exc_info()[1]
    if isinstance(error, OSError):
      if self.verbose:
        print(f'{client_address[0]}: connection closed: {error}', file=sys.stderr)
      return
    super().handle_error(request, client_address)
