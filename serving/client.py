"""Clients for TF Serving's REST and gRPC APIs (ours or the real server), and a CLI.

    python -m serving.client recommend --user 42 -k 10 [--grpc | --rest]
    python -m serving.client status | metadata [--grpc | --rest]
    python -m serving.client recommend --history 1,50,181 --label canary   (or --version 7)

Both clients answer the same Python values: status and metadata as dicts (TF Serving's JSON),
predict as {output name: numpy array}, classify as [[(label, score), ...] per example] and
regress as [value per example] (examples as dicts of feature values: serving/json_examples.py).
gRPC goes through the tensorflow-serving-api stubs.
Every call may name a version: None (the latest), a number, or a label (str, e.g. 'stable');
the client's own `version` is the default.
"""
import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np
import requests
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, inference_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)
import tensorflow as tf

from serving.json_examples import examples_input
from serving.protos_json import metadata_json, proto_json
from serving.recommendations import (DEFAULT_MODEL_NAME, Answer, Request, make_request,
                                     print_recommendations, top_k_rows)


# None: the latest version; an int: that version; a str: the version under that label.
Version = Union[None, int, str]
# A tf.Example as a dict of features: {'x': 1.5, 'genres': ['Comedy', 'Drama']}.
Features = Dict[str, object]
# Per example, its classes as (label, score), as TF Serving's REST :classify answers them.
Classifications = List[List[Tuple[str, float]]]


class ServingClientError(Exception):
  """The server answered with an error: code (HTTP status or gRPC code name) and message."""

  def __init__(self, code, message: str):
    super().__init__(f'{code}: {message}')
    self.code = code
    self.message = message


class RestClient:
  """http://host:8501/v1/models/{model}... with one keep-alive session."""

  def __init__(self, url: str = 'http://localhost:8501', model: str = DEFAULT_MODEL_NAME,
               timeout: float = 30.0, version: Version = None):
    self.url, self.model, self.timeout, self.version = url.rstrip('/'), model, timeout, version
    self._session = requests.Session()

  def _model_url(self, version: Version) -> str:
    version = self.version if version is None else version
    if isinstance(version, str):
      return f'{self.url}/v1/models/{self.model}/labels/{version}'
    return f'{self.url}/v1/models/{self.model}' + (f'/versions/{version}' if version else '')

  def _answer(self, response: requests.Response) -> dict:
    try:
      body = response.json()
    except ValueError:
      raise ServingClientError(response.status_code, response.text[:300]) from None
    if response.status_code != 200:
      raise ServingClientError(response.status_code, body.get('error', response.text[:300]))
    return body

  def status(self, version: Version = None) -> dict:
    return self._answer(self._session.get(self._model_url(version), timeout=self.timeout))

  def metadata(self, version: Version = None) -> dict:
    return self._answer(self._session.get(self._model_url(version) + '/metadata',
                                          timeout=self.timeout))

  def predict(self, inputs: Dict[str, Sequence], signature_name: str = '',
              version: Version = None) -> Dict[str, np.ndarray]:
    """Columnar request; outputs as numpy arrays (strings as str)."""
    body = {'inputs': {name: np.asarray(value).tolist() for name, value in inputs.items()}}
    if signature_name:
      body['signature_name'] = signature_name
    answer = self._answer(self._session.post(self._model_url(version) + ':predict',
                                             json=body, timeout=self.timeout))
    outputs = answer['outputs']
    if not isinstance(outputs, dict):  # one output: TF Serving leaves out its name
      outputs = {'output': outputs}
    return {name: np.asarray(value) for name, value in outputs.items()}

  def _examples_call(self, method: str, examples: Sequence[Features],
                     context: Optional[Features], signature_name: str, version: Version) -> list:
    body = {'examples': list(examples)}
    if context is not None:
      body['context'] = context
    if signature_name:
      body['signature_name'] = signature_name
    return self._answer(self._session.post(f'{self._model_url(version)}:{method}', json=body,
                                           timeout=self.timeout))['results']

  def classify(self, examples: Sequence[Features], context: Optional[Features] = None,
               signature_name: str = '', version: Version = None) -> Classifications:
    return [[(label, score) for label, score in classes] for classes in
            self._examples_call('classify', examples, context, signature_name, version)]

  def regress(self, examples: Sequence[Features], context: Optional[Features] = None,
              signature_name: str = '', version: Version = None) -> List[float]:
    return self._examples_call('regress', examples, context, signature_name, version)

  def close(self) -> None:
    self._session.close()


class GrpcClient:
  """host:8500 through tensorflow.serving.PredictionService and ModelService stubs."""

  def __init__(self, target: str = 'localhost:8500', model: str = DEFAULT_MODEL_NAME,
               timeout: float = 30.0, version: Version = None):
    self.model, self.timeout, self.version = model, timeout, version
    # Receive what the server sends: it bounds its answers (--max_response_bytes, 16 MiB),
    # over gRPC's 4 MiB client default (1,000 users' top 100 is about 4.5 MB). A connection
    # of its own: gRPC otherwise shares one between channels of the same target and options,
    # and a server of several processes (--server_processes) spreads connections.
    self._channel = grpc.insecure_channel(target, options=[
        ('grpc.max_receive_message_length', -1), ('grpc.use_local_subchannel_pool', 1)])
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def _spec(self, spec, version: Version, signature_name: str = '') -> None:
    spec.name = self.model
    version = self.version if version is None else version
    if isinstance(version, str):
      spec.version_label = version
    elif version:
      spec.version.value = version
    if signature_name:
      spec.signature_name = signature_name

  def _call(self, method, request):
    try:
      return method(request, timeout=self.timeout)
    except grpc.RpcError as error:
      raise ServingClientError(error.code().name, error.details()) from None

  def status(self, version: Version = None) -> dict:
    request = get_model_status_pb2.GetModelStatusRequest()
    self._spec(request.model_spec, version)
    return proto_json(self._call(self._models.GetModelStatus, request))

  def metadata(self, version: Version = None) -> dict:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
    self._spec(request.model_spec, version)
    return metadata_json(self._call(self._predictions.GetModelMetadata, request))

  def predict_request(self, inputs: Dict[str, Sequence], signature_name: str = '',
                      version: Version = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    self._spec(request.model_spec, version, signature_name)
    for name, value in inputs.items():
      array = np.asarray(value)
      if array.dtype.kind in 'US':
        array = array.astype(object)
      request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request

  def predict_response(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """The whole PredictResponse (model_spec says which version answered)."""
    return self._call(self._predictions.Predict, request)

  def predict(self, inputs: Dict[str, Sequence], signature_name: str = '',
              version: Version = None) -> Dict[str, np.ndarray]:
    response = self.predict_response(self.predict_request(inputs, signature_name, version))
    return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}

  def _request(self, request_type, signature_name: str, version: Version, examples, context):
    request = request_type()
    self._spec(request.model_spec, version, signature_name)
    request.input.CopyFrom(examples_input(examples, context))
    return request

  def classify(self, examples: Sequence[Features], context: Optional[Features] = None,
               signature_name: str = '', version: Version = None) -> Classifications:
    request = self._request(classification_pb2.ClassificationRequest, signature_name, version,
                            examples, context)
    return classifications(self._call(self._predictions.Classify, request).result)

  def regress(self, examples: Sequence[Features], context: Optional[Features] = None,
              signature_name: str = '', version: Version = None) -> List[float]:
    request = self._request(regression_pb2.RegressionRequest, signature_name, version,
                            examples, context)
    return regressions(self._call(self._predictions.Regress, request).result)

  def multi_inference(self, tasks: Sequence[Tuple[str, str]], examples: Sequence[Features],
                      context: Optional[Features] = None, version: Version = None) -> list:
    """tasks: (signature name, 'classify' or 'regress'); one result per task, as classify or
    regress answers it."""
    request = inference_pb2.MultiInferenceRequest(input=examples_input(examples, context))
    for signature_name, method in tasks:
      task = request.tasks.add(method_name=f'tensorflow/serving/{method}')
      self._spec(task.model_spec, version, signature_name)
    response = self._call(self._predictions.MultiInference, request)
    return [classifications(result.classification_result)
            if result.WhichOneof('result') == 'classification_result'
            else regressions(result.regression_result) for result in response.results]

  def close(self) -> None:
    self._channel.close()


def classifications(result: classification_pb2.ClassificationResult) -> Classifications:
  return [[(entry.label, entry.score) for entry in classes.classes]
          for classes in result.classifications]


def regressions(result: regression_pb2.RegressionResult) -> List[float]:
  return [regression.value for regression in result.regressions]


def input_names(client, signature_name: str = 'serving_default') -> List[str]:
  """A served signature's input names, from the model metadata (either client)."""
  signatures = client.metadata()['metadata']['signature_def']['signature_def']
  return sorted(signatures[signature_name]['inputs'])


def recommend(client, request: Request, k: int = 10) -> List[Answer]:
  """Top-k movies and the strategy that answered, per query of the request
  (recommendations.make_request, with `input_names(client)`), from a served model (either
  client)."""
  return top_k_rows(client.predict(request.inputs), k)


def make_client(args: argparse.Namespace):
  if args.grpc:
    return GrpcClient(f'{args.host}:{args.grpc_port}', args.model, args.timeout, args.version)
  return RestClient(f'http://{args.host}:{args.rest_port}', args.model, args.timeout,
                    args.version)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m serving.client', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common = argparse.ArgumentParser(add_help=False)
  transport = common.add_mutually_exclusive_group()
  transport.add_argument('--grpc', action='store_true', help='call the gRPC API (port 8500)')
  transport.add_argument('--rest', action='store_true', help='call the REST API (the default)')
  common.add_argument('--host', default='localhost')
  common.add_argument('--grpc-port', type=int, default=8500)
  common.add_argument('--rest-port', type=int, default=8501)
  common.add_argument('--model', default=DEFAULT_MODEL_NAME,
                      help=f'served model name (default: {DEFAULT_MODEL_NAME})')
  common.add_argument('--timeout', type=float, default=30.0, help='seconds per call')
  version = common.add_mutually_exclusive_group()
  version.add_argument('--version', type=int, help='a version number (default: the latest)')
  version.add_argument('--label', dest='version', help='a version label of models.config '
                       '(stable, canary: python -m serving.rollout)')
  commands = parser.add_subparsers(dest='command', required=True)
  recommend_parser = commands.add_parser('recommend', parents=[common],
                                         help='top-k movies for users')
  recommend_parser.add_argument('--user', action='append', help='a user id (repeat for several)')
  recommend_parser.add_argument('--history', action='append', metavar='ID,ID,...',
                                help='sequential models: movie ids watched, oldest first, '
                                'comma-separated (repeat for several); other models read --user')
  recommend_parser.add_argument('-k', type=int, default=10)
  recommend_parser.add_argument('--timestamp', type=int, action='append',
                                help='per user, for models trained with timestamps '
                                '(default: now)')
  recommend_parser.add_argument('--json', action='store_true', help='print JSON')
  commands.add_parser('status', parents=[common], help='model version status')
  commands.add_parser('metadata', parents=[common], help='signature defs')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  client = make_client(args)
  try:
    if args.command == 'recommend':
      request = make_request(input_names(client), args.user or [],
                             [history.split(',') for history in args.history or []],
                             args.timestamp)
      rows = recommend(client, request, args.k)
      if args.json:
        print(json.dumps({name: answer.to_json() for name, answer in zip(request.names, rows)},
                         indent=1))
      else:
        print(f'Via {"gRPC" if args.grpc else "REST"} ({args.host}), model {args.model}:')
        print_recommendations(request, rows)
    else:
      print(json.dumps(getattr(client, args.command)(), indent=1))
  except ValueError as error:  # users for a sequential model, or the other way round
    print(f'error: {error}', file=sys.stderr)
    return 2
  except ServingClientError as error:
    print(f'error: the server answered {error}', file=sys.stderr)
    return 1
  except (requests.ConnectionError, requests.Timeout) as error:
    print(f'error: cannot reach the REST API at {args.host}:{args.rest_port}: {error}',
          file=sys.stderr)
    return 1
  finally:
    client.close()
  return 0


if __name__ == '__main__':
  sys.exit(main())
