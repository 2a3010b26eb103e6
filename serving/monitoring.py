"""Prometheus metrics as TF Serving exports them (`--monitoring_config_file`).

The config file is TF Serving's MonitoringConfig text proto:

    prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }

and the metrics are served on the REST port at that path (TF Serving's default when the path is
empty), for any HTTP method, as text/plain. What is counted, with TF Serving's names and labels
(tensorflow_serving/servables/tensorflow/util.cc, tensorflow/cc/saved_model/loader.cc), so
dashboards and alerts written for TF Serving read this server too:
- `:tensorflow:serving:request_count{model_name, status}`: every predict request over gRPC, and
  every REST request under /v1/ (status and metadata too), by outcome (`OK`,
  `INVALID_ARGUMENT`, `NOT_FOUND`, ...).
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}`: a histogram of the
  successful ones' wall time in microseconds (buckets 10 * 1.8^i, 33 of them): gRPC predict as
  `API="Predict", entrypoint="GRPC"`; REST as the method the path names, lower case
  (`API="predict"`; `""` for status and metadata), `entrypoint="REST"`.
- `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}` (`success` / `fail`)
  and `:tensorflow:cc:saved_model:load_latency{model_path}` (total microseconds): every
  version load.
As TF Serving, gRPC GetModelMetadata and the ModelService calls are not counted.

The exposition is TF Serving's exporter's (tensorflow_serving/util/prometheus_exporter.cc):
names with '/' turned to ':', a `# TYPE` line a metric and no `# HELP`, integer counters,
cumulative histogram buckets with `le` last and `%g` numbers. prometheus_client cannot write
that (its counters end in `_total`), so it is written here; prometheus_client's parser reads it
back in the tests.
"""
import threading
from typing import Dict, List, Optional, Set, Tuple

from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from google.protobuf import symbol_database

DEFAULT_PATH = '/monitoring/prometheus/metrics'
CONTENT_TYPE = 'text/plain'
# TF Serving's request latency buckets: Exponential(scale 10, growth 1.8, 33 buckets), in
# microseconds (10 us to about 25 minutes), then +Inf.
LATENCY_BUCKETS = tuple(10 * 1.8**index for index in range(33))

# Requests name their model, and a request for an unknown model is counted under its name too
# (as TF Serving does): these bound what clients can make the counters hold. Names past the
# first MAX_MODEL_NAMES are counted together as OTHER_MODELS; a name is cut to MAX_NAME_CHARS.
MAX_MODEL_NAMES = 1000
MAX_NAME_CHARS = 256
OTHER_MODELS = '__other__'

REQUEST_COUNT = ':tensorflow:serving:request_count'
REQUEST_LATENCY = ':tensorflow:serving:request_latency'
LOAD_ATTEMPT_COUNT = ':tensorflow:cc:saved_model:load_attempt_count'
LOAD_LATENCY = ':tensorflow:cc:saved_model:load_latency'


def _monitoring_config_class():
  """tensorflow.serving.MonitoringConfig, built from its two-message definition
  (tensorflow_serving/config/monitoring_config.proto): the tensorflow-serving-api package does
  not ship that proto's module."""
  pool = descriptor_pool.DescriptorPool()
  proto = descriptor_pb2.FileDescriptorProto(
      name='tensorflow_serving/config/monitoring_config.proto', package='tensorflow.serving',
      syntax='proto3')
  field = descriptor_pb2.FieldDescriptorProto
  prometheus = proto.message_type.add(name='PrometheusConfig')
  prometheus.field.add(name='enable', number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
  prometheus.field.add(name='path', number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
  monitoring = proto.message_type.add(name='MonitoringConfig')
  monitoring.field.add(name='prometheus_config', number=1, type=field.TYPE_MESSAGE,
                       label=field.LABEL_OPTIONAL,
                       type_name='.tensorflow.serving.PrometheusConfig')
  pool.Add(proto)
  database = symbol_database.SymbolDatabase(pool=pool)
  return database.GetPrototype(pool.FindMessageTypeByName('tensorflow.serving.MonitoringConfig'))


MonitoringConfig = _monitoring_config_class()


def parse_monitoring_config(text: str, path: str = 'monitoring.config') -> Optional[str]:
  """The metrics path a MonitoringConfig enables (its path, or DEFAULT_PATH), or None when
  Prometheus is off. ValueError naming the file and position for text that does not parse."""
  config = MonitoringConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as error:
    raise ValueError(f'{path}: Error parsing text-format tensorflow.serving.MonitoringConfig: '
                     f'{error}') from None
  prometheus = config.prometheus_config
  if not prometheus.enable:
    return None
  if prometheus.path and not prometheus.path.startswith('/'):
    raise ValueError(f'{path}: prometheus_config.path must start with /, got '
                     f'{prometheus.path!r}')
  return prometheus.path or DEFAULT_PATH


def read_monitoring_config(path: str) -> Optional[str]:
  """parse_monitoring_config of a file (local or remote); OSError if it cannot be read."""
  import tensorflow as tf  # for gs:// and other remote paths, as the model paths
  try:
    with tf.io.gfile.GFile(path) as file:
      text = file.read()
  except tf.errors.OpError as error:
    raise OSError(f'cannot read --monitoring_config_file {path}: {error.message}') from None
  return parse_monitoring_config(text, path)


def _number(value: float) -> str:
  """As absl::StrCat writes a double (%g; integers without a point)."""
  return '%g' % value


def _labels(names: Tuple[str, ...], values: Tuple[str, ...], extra: str = '') -> str:
  pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values)]
  return '{' + ','.join(pairs + ([extra] if extra else [])) + '}'


def _escape(value: str) -> str:
  return value.replace('\\', '\\\\').replace('"', '\\"')


class _Histogram:
  """Counts of observations per bucket (not cumulative), their sum and count."""

  def __init__(self):
    self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
    self.total = 0.0
    self.count = 0

  def observe(self, value: float) -> None:
    index = next((i for i, limit in enumerate(LATENCY_BUCKETS) if value < limit),
                 len(LATENCY_BUCKETS))
    self.counts[index] += 1
    self.total += value
    self.count += 1


class Metrics:
  """The server's counters (thread-safe), and their Prometheus text."""

  def __init__(self):
    self._lock = threading.Lock()
    self._requests: Dict[Tuple[str, str], int] = {}
    self._latency: Dict[Tuple[str, str, str], _Histogram] = {}
    self._loads: Dict[Tuple[str, str], int] = {}
    self._load_micros: Dict[Tuple[str], int] = {}
    self._model_names: Set[str] = set()  # the model_name labels requests have used

  def record_request(self, model_name: str, api: str, entrypoint: str, status: str,
                     seconds: float) -> None:
    """One request's outcome (a status code name: OK, INVALID_ARGUMENT, ...); its latency is
    kept only when it succeeded, as TF Serving does. Model names are bounded (MAX_MODEL_NAMES,
    MAX_NAME_CHARS)."""
    model_name = model_name[:MAX_NAME_CHARS]
    with self._lock:
      if model_name not in self._model_names:
        if len(self._model_names) < MAX_MODEL_NAMES:
          self._model_names.add(model_name)
        else:
          model_name = OTHER_MODELS
      key = (model_name, status)
      self._requests[key] = self._requests.get(key, 0) + 1
      if status == 'OK':
        self._latency.setdefault((model_name, api, entrypoint), _Histogram()).observe(
            seconds * 1e6)

  def record_load(self, model_path: str, succeeded: bool, seconds: float) -> None:
    with self._lock:
      key = (model_path, 'success' if succeeded else 'fail')
      self._loads[key] = self._loads.get(key, 0) + 1
      self._load_micros[(model_path,)] = (self._load_micros.get((model_path,), 0)
                                          + int(seconds * 1e6))

  def snapshot(self) -> dict:
    """Every counter, as JSON-able lists (for Metrics.add in another process)."""
    with self._lock:
      return {
          'requests': [[*key, value] for key, value in self._requests.items()],
          'latency': [[*key, histogram.counts, histogram.total, histogram.count]
                      for key, histogram in self._latency.items()],
          'loads': [[*key, value] for key, value in self._loads.items()],
          'load_micros': [[*key, value] for key, value in self._load_micros.items()]}

  def add(self, snapshot: dict) -> None:
    """Adds another Metrics' snapshot to these counters (the processes of one server,
    serving/processes.py)."""
    with self._lock:
      for cells, rows in ((self._requests, snapshot['requests']), (self._loads,
                          snapshot['loads']), (self._load_micros, snapshot['load_micros'])):
        for *key, value in rows:
          cells[tuple(key)] = cells.get(tuple(key), 0) + value
      for *key, counts, total, count in snapshot['latency']:
        histogram = self._latency.setdefault(tuple(key), _Histogram())
        histogram.counts = [mine + theirs for mine, theirs in zip(histogram.counts, counts)]
        histogram.total += total
        histogram.count += count

  def exposition(self) -> str:
    """Every metric, in the order of TF Serving's names for them ('/tensorflow/cc/...' before
    '/tensorflow/serving/...'), in its exporter's text format."""
    with self._lock:
      lines = []
      for name, labels, cells in (
          (LOAD_ATTEMPT_COUNT, ('model_path', 'status'), self._loads),
          (LOAD_LATENCY, ('model_path',), self._load_micros),
          (REQUEST_COUNT, ('model_name', 'status'), self._requests)):
        lines.append(f'# TYPE {name} counter')
        lines.extend(f'{name}{_labels(labels, key)} {value}'
                     for key, value in sorted(cells.items()))
      lines.extend(self._histogram_lines(REQUEST_LATENCY, ('model_name', 'API', 'entrypoint'),
                                         self._latency))
      return '\n'.join(lines) + '\n'

  @staticmethod
  def _histogram_lines(name: str, labels: Tuple[str, ...],
                       cells: Dict[Tuple[str, ...], _Histogram]) -> List[str]:
    lines = [f'# TYPE {name} histogram']
    for key, histogram in sorted(cells.items()):
      cumulative = 0
      for limit, count in zip([*map(_number, LATENCY_BUCKETS), '+Inf'], histogram.counts):
        cumulative += count
        bucket = _labels(labels, key, 'le="' + limit + '"')
        lines.append(f'{name}_bucket{bucket} {cumulative}')
      lines.append(f'{name}_sum{_labels(labels, key)} {_number(histogram.total)}')
      lines.append(f'{name}_count{_labels(labels, key)} {histogram.count}')
    return lines
