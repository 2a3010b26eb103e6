"""TF Serving's REST formats for :classify and :regress (util/json_tensor.cc at 2.16.1).

A request is `{"signature_name": ..., "context": {...}, "examples": [{...}, ...]}`: each example
(and the optional context every example shares) is a JSON object of features, each feature a
value or a list of values of one kind: JSON strings (or {"b64": ...}) make a bytes_list,
numbers with a decimal point or exponent a float_list, other numbers and booleans an
int64_list. The answer is `{"results": [[[label, score], ...], ...]}` for classify (a list of
classes per example) and `{"results": [value, ...]}` for regress.
"""
import base64
import binascii
import json
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from serving import errors

_INT64 = (-2**63, 2**63 - 1)


def _json_type(value) -> str:
  return {dict: 'OBJECT', list: 'ARRAY', type(None): 'NULL'}.get(type(value), type(value).__name__)


def _add_value(value, name: str, feature: tf.train.Feature) -> None:
  """Appends one JSON value to a feature, whose kind the first value fixed."""
  if isinstance(value, bool):
    kind, values = 'int64_list', [int(value)]
  elif isinstance(value, int):
    if not _INT64[0] <= value <= _INT64[1]:
      raise errors.invalid_argument(f'Feature: {name} has uint64_t element. Only int64_t is '
                                    'supported.')
    kind, values = 'int64_list', [value]
  elif isinstance(value, float):
    kind, values = 'float_list', [value]
  elif isinstance(value, str):
    kind, values = 'bytes_list', [value.encode()]
  elif isinstance(value, dict) and set(value) == {'b64'} and isinstance(value['b64'], str):
    try:
      kind, values = 'bytes_list', [base64.b64decode(value['b64'], validate=True)]
    except (binascii.Error, ValueError):
      raise errors.invalid_argument(f'Feature: {name}: "b64" value is not valid base64'
                                    ) from None
  else:
    raise errors.invalid_argument(f'Feature: {name} has element with unexpected JSON type: '
                                  f'{_json_type(value)}')
  current = feature.WhichOneof('kind')
  if current not in (None, kind):
    raise errors.invalid_argument(f'Unexpected element type in feature: {name} expecting '
                                  f'type: {current.split("_")[0]}')
  getattr(feature, kind).value.extend(values)


def example_from_json(value, where: str) -> tf.train.Example:
  if not isinstance(value, dict):
    raise errors.invalid_argument(f'{where}: Example must be JSON object but got JSON '
                                  f'{_json_type(value)}')
  example = tf.train.Example()
  for name, content in value.items():
    feature = example.features.feature[name]
    for item in content if isinstance(content, list) else [content]:
      _add_value(item, name, feature)
  return example


def examples_input(examples: Sequence, context: Optional[Dict] = None) -> input_pb2.Input:
  """An Input of tf.Examples made from JSON objects (dicts of feature values); with a context,
  an example_list_with_context."""
  request_input = input_pb2.Input()
  target = request_input.example_list
  if context is not None:
    target = request_input.example_list_with_context
    target.context.CopyFrom(example_from_json(context, 'context'))
  for row, example in enumerate(examples):
    target.examples.add().CopyFrom(example_from_json(example, f'examples[{row}]'))
  return request_input


def input_from_json(request: Dict) -> input_pb2.Input:
  """A parsed :classify or :regress body (a JSON object) -> the request's Input."""
  if 'examples' not in request:
    raise errors.invalid_argument("When method is classify, key 'examples' is expected and was "
                                  'not found')
  examples = request['examples']
  if not isinstance(examples, list):
    raise errors.invalid_argument("Expecting 'examples' value to be an list/array")
  if not examples:
    raise errors.invalid_argument("'examples' value is an empty array")
  context = request.get('context')
  if 'context' in request and not isinstance(context, dict):
    raise errors.invalid_argument(f'context: Example must be JSON object but got JSON '
                                  f'{_json_type(context)}')
  return examples_input(examples, context)


def _float(value: float) -> float:
  """A float32 as JSON shows it: its shortest decimal (0.1, not 0.10000000149011612)."""
  return float(str(np.float32(value)))


def classification_json(result: classification_pb2.ClassificationResult) -> str:
  return json.dumps({'results': [[[entry.label, _float(entry.score)]
                                  for entry in classifications.classes]
                                 for classifications in result.classifications]})


def regression_json(result: regression_pb2.RegressionResult) -> str:
  return json.dumps({'results': [_float(regression.value) for regression in result.regressions]})
