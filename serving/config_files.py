"""TF Serving's configuration files: models.config and the batching parameters file.

Both are text protos that real TF Serving reads (`--model_config_file`,
`--batching_parameters_file`) and that our local server reads too, so one file configures
both. models.config uses the ModelServerConfig proto from the tensorflow-serving-api package;
that package does not ship BatchingParameters (session_bundle_config.proto), so its schema is
declared here, field for field, and parsed by protobuf's own text format.

    python -m serving.config_files --model-name retrieval --model-base-path /models/retrieval \\
        --models-config models.config --batching-config batching_parameters.txt
"""
import argparse
import dataclasses
import pathlib
import sys
from typing import List, Mapping, Optional, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.recommendations import DEFAULT_MODEL_NAME


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """One served model: its name, its base path (numbered version folders) and version policy.

  version_policy: 'latest' (the num_latest highest versions, TF Serving's default), 'all',
  or 'specific' (exactly `versions`).
  version_labels: label -> version, as models.config's `version_labels` (e.g. {'stable': 3,
  'canary': 4}); requests name them as /labels/<label> (REST) or model_spec.version_label.
  """
  name: str
  base_path: str
  version_policy: str = 'latest'
  num_latest: int = 1
  versions: Sequence[int] = ()
  version_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.version_policy not in ('latest', 'all', 'specific'):
      raise ValueError(f'model {self.name}: version policy must be latest, all or specific, '
                       f'not {self.version_policy!r}')
    if self.version_policy == 'specific' and not self.versions:
      raise ValueError(f'model {self.name}: the specific version policy needs versions')
    if self.num_latest < 1:
      raise ValueError(f'model {self.name}: num_latest must be >= 1')
    for label, version in self.version_labels.items():
      if not label or version < 0:
        raise ValueError(f'model {self.name}: version label {label!r} -> {version}: labels '
                         'need a name and a version >= 0')


def models_config_text(models: Sequence[ModelSource]) -> str:
  """models.config for TF Serving's --model_config_file."""
  config = model_server_config_pb2.ModelServerConfig()
  for model in models:
    entry = config.model_config_list.config.add(name=model.name, base_path=model.base_path,
                                                model_platform='tensorflow')
    policy = entry.model_version_policy
    if model.version_policy == 'latest':
      policy.latest.num_versions = model.num_latest
    elif model.version_policy == 'all':
      policy.all.SetInParent()
    else:
      policy.specific.versions.extend(model.versions)
    for label, version in sorted(model.version_labels.items()):
      entry.version_labels[label] = version
  return text_format.MessageToString(config)


def read_models_config(path) -> List[ModelSource]:
  """The models in a models.config file; errors name the file and line."""
  return parse_models_config(pathlib.Path(path).read_text(), path)


def parse_models_config(text: str, path='models.config') -> List[ModelSource]:
  """The models in models.config text (read from path, which errors name with the line)."""
  config = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as error:
    # TF Serving's words, so a search for the message finds both servers' answers.
    raise ValueError(f'{path}: Error parsing text-format tensorflow.serving.ModelServerConfig: '
                     f'{error}') from None
  return sources_of(config, path)


def sources_of(config: model_server_config_pb2.ModelServerConfig,
               path='models.config') -> List[ModelSource]:
  """The models of a ModelServerConfig (from path, or a request: errors name it)."""
  if config.WhichOneof('config') != 'model_config_list':
    raise ValueError(f'{path}: needs a model_config_list (custom_model_config is not supported)')
  models = []
  for entry in config.model_config_list.config:
    if entry.model_platform not in ('', 'tensorflow'):
      raise ValueError(f'{path}: model {entry.name}: platform {entry.model_platform!r} '
                       'is not supported (only tensorflow)')
    policy = entry.model_version_policy.WhichOneof('policy_choice') or 'latest'
    models.append(ModelSource(
        name=entry.name, base_path=entry.base_path, version_policy=policy,
        num_latest=entry.model_version_policy.latest.num_versions or 1,
        versions=tuple(entry.model_version_policy.specific.versions),
        version_labels=dict(entry.version_labels)))
  names = [model.name for model in models]
  if len(set(names)) != len(names) or not all(names):
    raise ValueError(f'{path}: model names must be present and unique, got {names}')
  return models


def _batching_parameters_class():
  """tensorflow.serving.BatchingParameters, declared as in session_bundle_config.proto."""
  proto = descriptor_pb2.FileDescriptorProto(
      name='tensorflow_serving/servables/tensorflow/session_bundle_config.proto',
      package='tensorflow.serving', syntax='proto3',
      dependency=['google/protobuf/wrappers.proto'])
  message = proto.message_type.add(name='BatchingParameters')
  field = descriptor_pb2.FieldDescriptorProto
  for number, (name, wrapper) in enumerate(
      [('max_batch_size', 'Int64Value'), ('batch_timeout_micros', 'Int64Value'),
       ('max_enqueued_batches', 'Int64Value'), ('num_batch_threads', 'Int64Value'),
       ('thread_pool_name', 'StringValue')], start=1):
    message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL,
                      type=field.TYPE_MESSAGE, type_name=f'.google.protobuf.{wrapper}')
  message.field.add(name='allowed_batch_sizes', number=6, label=field.LABEL_REPEATED,
                    type=field.TYPE_INT64)
  message.field.add(name='pad_variable_length_inputs', number=7, label=field.LABEL_OPTIONAL,
                    type=field.TYPE_BOOL)
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  pool.Add(proto)
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName('tensorflow.serving.BatchingParameters'))


BatchingParametersProto = _batching_parameters_class()


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """Server-side batching. The defaults follow TF Serving's batching guide for CPU-only
  serving: a batch timeout of 0 (a batch is what has queued while the batch threads were busy:
  no wait when the server is idle, larger batches under load) and as many batch threads as
  cores (2, this project's machines: set num_batch_threads to a bigger pod's), with batches of
  at most 32 rows to bound their memory. (Until 2026-12-05 the
  timeout was 2 ms: every request at low load waited it out, 4 ms at p50 instead of 1, and at
  16 concurrent requests over two server processes fewer requests/s; docs/benchmarks.md.)"""
  max_batch_size: int = 32
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 100
  num_batch_threads: int = 2

  def __post_init__(self):
    for name in ('max_batch_size', 'max_enqueued_batches', 'num_batch_threads'):
      if getattr(self, name) < 1:
        raise ValueError(f'batching parameter {name} must be >= 1, got {getattr(self, name)}')
    if self.batch_timeout_micros < 0:
      raise ValueError('batching parameter batch_timeout_micros must be >= 0')


def batching_parameters_text(parameters: BatchingParameters) -> str:
  """The file for TF Serving's --batching_parameters_file."""
  proto = BatchingParametersProto()
  for field in dataclasses.fields(parameters):
    getattr(proto, field.name).value = getattr(parameters, field.name)
  return text_format.MessageToString(proto)


def read_batching_parameters(path) -> BatchingParameters:
  """Parses a TF Serving batching parameters file; fields it leaves out keep our defaults."""
  proto = BatchingParametersProto()
  try:
    text_format.Parse(pathlib.Path(path).read_text(), proto)
  except text_format.ParseError as error:
    raise ValueError(f'{path}: {error}') from None
  values = {field.name: getattr(proto, field.name).value
            for field in dataclasses.fields(BatchingParameters) if proto.HasField(field.name)}
  try:
    return BatchingParameters(**values)
  except ValueError as error:
    raise ValueError(f'{path}: {error}') from None


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m serving.config_files', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model-name', default=DEFAULT_MODEL_NAME)
  parser.add_argument('--model-base-path', required=True,
                      help='where the Pusher writes versions, as the server sees it')
  parser.add_argument('--version-policy', choices=['latest', 'all', 'specific'], default='latest')
  parser.add_argument('--num-latest', type=int, default=1)
  parser.add_argument('--versions', type=int, nargs='*', default=(),
                      help='for --version-policy specific')
  parser.add_argument('--models-config', help='write models.config here')
  defaults = BatchingParameters()
  parser.add_argument('--batching-config', help='write the batching parameters file here')
  for field in dataclasses.fields(BatchingParameters):
    parser.add_argument('--' + field.name.replace('_', '-'), type=int,
                        default=getattr(defaults, field.name))
  args = parser.parse_args(argv)
  try:
    model = ModelSource(args.model_name, args.model_base_path, args.version_policy,
                        args.num_latest, tuple(args.versions))
    batching = BatchingParameters(**{field.name: getattr(args, field.name)
                                     for field in dataclasses.fields(BatchingParameters)})
  except ValueError as error:
    parser.error(str(error))
  outputs = [(args.models_config, models_config_text([model])),
             (args.batching_config, batching_parameters_text(batching))]
  if not any(path for path, _ in outputs):
    parser.error('nothing to write: give --models-config and/or --batching-config')
  for path, text in outputs:
    if path:
      pathlib.Path(path).write_text(text)
      print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
