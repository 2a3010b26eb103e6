"""Classify, Regress and MultiInference: TF Serving's tf.Example APIs, independent of transport.

A request holds an `Input` of tf.Examples (an `example_list`, or an `example_list_with_context`
whose context features every example shares). As TF Serving does (servables/tensorflow/util.cc),
the examples are serialized into one string tensor [num_examples] (with a context, each is the
context's bytes followed by the example's: protobuf merges the two, the example's features
winning) and fed to the signature's `inputs` tensor; the graph parses them. The signatures'
rules and the results' checks follow classifier.cc, regressor.cc and multi_inference.cc at
TF Serving 2.16.1, with their messages:

- classify: a signature with one input `inputs` and one or two outputs among `classes`
  (string [batch, num_classes]) and `scores` (float [batch, num_classes]); the result is, per
  example, a list of (label, score) classes.
- regress: one input `inputs`, one output `outputs` (float [batch] or [batch, 1]); the result
  is one value per example.
- MultiInference: several classify/regress tasks on one model, one signature each, run on the
  same examples in one Session::Run.
Method names (tensorflow/serving/classify, ...) are not checked, as in TF Serving by default.
"""
from typing import Dict, List, Sequence

import numpy as np
from tensorflow_serving.apis import (classification_pb2, inference_pb2, input_pb2, model_pb2,
                                     regression_pb2)

from serving import errors
from serving.models import DEFAULT_SIGNATURE, LoadedVersion

CLASSIFY_METHOD = 'tensorflow/serving/classify'
REGRESS_METHOD = 'tensorflow/serving/regress'


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
  """The Input's examples as one [num_examples] array of serialized tf.Examples."""
  kind = request_input.WhichOneof('kind')
  if kind == 'example_list_with_context':
    context = request_input.example_list_with_context.context.SerializeToString()
    examples = [context + example.SerializeToString()
                for example in request_input.example_list_with_context.examples]
  elif kind == 'example_list':
    examples = [example.SerializeToString() for example in request_input.example_list.examples]
  else:
    examples = []
  if not examples:
    raise errors.invalid_argument('Input is empty.')
  array = np.empty(len(examples), dtype=object)
  array[:] = examples
  return array


def signature_for(loaded: LoadedVersion, signature_name: str,
                  missing: str = 'No signature was found with the name: '):
  """(name, SignatureDef); INVALID_ARGUMENT for a name the model does not have. The method
  name is not checked, as TF Serving does not by default (--enable_signature_method_name_check
  is off): a signature of any method serves Classify or Regress if it has their shape."""
  name = signature_name or DEFAULT_SIGNATURE
  if name not in loaded.signature_defs:
    raise errors.invalid_argument(missing + name)
  return name, loaded.signature_defs[name]


def output_aliases(signature_def, method: str) -> List[str]:
  """The outputs a classify or regress signature answers with (PreProcessClassification,
  PreProcessRegression); INVALID_ARGUMENT for a signature that breaks their rules."""
  if len(signature_def.inputs) != 1:
    raise errors.invalid_argument('Expected one input Tensor.')
  if method == CLASSIFY_METHOD:
    if len(signature_def.outputs) not in (1, 2):
      raise errors.invalid_argument(
          f'Expected one or two output Tensors, found {len(signature_def.outputs)}')
    if 'inputs' not in signature_def.inputs:
      raise errors.invalid_argument('No classification inputs found in SignatureDef')
    aliases = [alias for alias in ('classes', 'scores') if alias in signature_def.outputs]
    if not aliases:
      raise errors.invalid_argument('Expected classification signature outputs to contain at '
                                    'least one of "classes" or "scores".')
    return aliases
  if len(signature_def.outputs) != 1:
    raise errors.invalid_argument('Expected one output Tensor.')
  if 'inputs' not in signature_def.inputs:
    raise errors.invalid_argument('No regression inputs found in SignatureDef')
  if 'outputs' not in signature_def.outputs:
    raise errors.invalid_argument('No regression outputs found in SignatureDef')
  return ['outputs']


def classification_result(outputs: Dict[str, np.ndarray], num_examples: int
                          ) -> classification_pb2.ClassificationResult:
  """outputs: 'classes' and/or 'scores', each [num_examples, num_classes]."""
  classes, scores = outputs.get('classes'), outputs.get('scores')
  for alias, array, kind in (('classes', classes, 'O'), ('scores', scores, 'f')):
    if array is None:
      continue
    if array.ndim != 2:
      raise errors.invalid_argument(f'Expected Tensor shape: [batch_size num_classes] but got '
                                    f'{list(array.shape)}')
    if array.dtype.kind != kind or (kind == 'f' and array.dtype != np.float32):
      expected = 'DT_STRING' if kind == 'O' else 'DT_FLOAT'
      raise errors.invalid_argument(f'Expected {alias} Tensor of {expected}. Got: {array.dtype}')
    if array.shape[0] != num_examples:
      raise errors.invalid_argument(f'Expected {alias} output batch size of {num_examples}. '
                                    f'Got: {array.shape[0]}')
  if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
    raise errors.invalid_argument('Tensors class and score should match in dim_size(1). Got '
                                  f'{classes.shape[1]} vs. {scores.shape[1]}')
  num_classes = (classes if classes is not None else scores).shape[1]
  result = classification_pb2.ClassificationResult()
  for row in range(num_examples):
    classifications = result.classifications.add()
    for column in range(num_classes):
      entry = classifications.classes.add()
      if classes is not None:
        label = classes[row, column]
        entry.label = label.decode('utf-8', 'replace') if isinstance(label, bytes) else label
      if scores is not None:
        entry.score = scores[row, column]
  return result


def regression_result(outputs: Dict[str, np.ndarray], num_examples: int
                      ) -> regression_pb2.RegressionResult:
  """outputs: 'outputs', float [num_examples] or [num_examples, 1]."""
  values = outputs['outputs']
  if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
    raise errors.invalid_argument('Expected output Tensor shape to be either [batch_size] or '
                                  f'[batch_size, 1] but got {list(values.shape)}')
  if values.shape[0] != num_examples:
    raise errors.invalid_argument('Input batch size did not match output batch size: '
                                  f'{num_examples} vs. {values.shape[0]}')
  if values.dtype != np.float32:
    raise errors.invalid_argument(f'Expected output Tensor of DT_FLOAT.  Got: {values.dtype}')
  result = regression_pb2.RegressionResult()
  for value in values.reshape(-1):
    result.regressions.add(value=value)
  return result


def _spec(loaded: LoadedVersion, signature_name: str) -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=loaded.name, signature_name=signature_name)
  spec.version.value = loaded.version
  return spec


# Per method: the response type, its result's field in a MultiInference result, and the
# function that makes the result from the signature's outputs.
_ANSWERS = {
    CLASSIFY_METHOD: (classification_pb2.ClassificationResponse, 'classification_result',
                      classification_result),
    REGRESS_METHOD: (regression_pb2.RegressionResponse, 'regression_result',
                     regression_result),
}


def _answer(loaded: LoadedVersion, request, method: str):
  """A ClassificationRequest's or RegressionRequest's response."""
  name, signature_def = signature_for(loaded, request.model_spec.signature_name)
  aliases = output_aliases(signature_def, method)
  examples = serialized_examples(request.input)
  outputs = loaded.predict(name, {'inputs': examples})[1]
  response_type, _, make_result = _ANSWERS[method]
  return response_type(model_spec=_spec(loaded, name), result=make_result(
      {alias: outputs[alias] for alias in aliases}, len(examples)))


def classify(loaded: LoadedVersion, request: classification_pb2.ClassificationRequest
             ) -> classification_pb2.ClassificationResponse:
  return _answer(loaded, request, CLASSIFY_METHOD)


def regress(loaded: LoadedVersion, request: regression_pb2.RegressionRequest
            ) -> regression_pb2.RegressionResponse:
  return _answer(loaded, request, REGRESS_METHOD)


def check_tasks(tasks: Sequence[inference_pb2.InferenceTask]) -> None:
  """MultiInference's rules on its tasks that need no model: at least one, all on one model."""
  if not tasks:
    raise errors.invalid_argument('MultiInferenceRequest must hold at least one task')
  for task in tasks:
    if not task.model_spec.name:
      raise errors.invalid_argument('Found ModelSpec with an empty model name.')
    if task.model_spec.name != tasks[0].model_spec.name:
      raise errors.invalid_argument('All ModelSpecs in a MultiInferenceRequest must access the '
                                    'same model name.')


def multi_inference(loaded: LoadedVersion, request: inference_pb2.MultiInferenceRequest
                    ) -> inference_pb2.MultiInferenceResponse:
  """Every task on the same examples in one Session::Run; one result per task, in order."""
  check_tasks(request.tasks)
  plans, seen = [], set()  # (task, signature name, {alias: tensor name})
  for task in request.tasks:
    name = task.model_spec.signature_name or DEFAULT_SIGNATURE
    if name in seen:
      raise errors.invalid_argument(f'Duplicate evaluation of signature: {name}')
    seen.add(name)
    if task.method_name not in _ANSWERS:
      raise errors.ServingError(errors.grpc.StatusCode.UNIMPLEMENTED,
                                f'Unsupported signature method_name: {task.method_name}')
    _, signature_def = signature_for(loaded, name,
                                     'Requested signature not found in model graph: ')
    aliases = output_aliases(signature_def, task.method_name)
    plans.append((task, name, {alias: signature_def.outputs[alias].name for alias in aliases},
                  signature_def.inputs['inputs'].name))
  examples = serialized_examples(request.input)
  fetches = sorted({tensor for _, _, outputs, _ in plans for tensor in outputs.values()})
  fetched = dict(zip(fetches, loaded.run_tensors(
      {input_name: examples for *_, input_name in plans}, fetches)))
  response = inference_pb2.MultiInferenceResponse()
  for task, name, outputs, _ in plans:
    values = {alias: fetched[tensor] for alias, tensor in outputs.items()}
    _, field, make_result = _ANSWERS[task.method_name]
    result = response.results.add(model_spec=_spec(loaded, name))
    getattr(result, field).CopyFrom(make_result(values, len(examples)))
  return response
