"""Where the serving contract tests send requests: our server on loopback, or a real TF Serving.

A real TF Serving is tested when TFSERVING_REST_URL (http://host:8501) and
TFSERVING_GRPC_TARGET (host:8500) are set; TFSERVING_MODEL_NAME names the model (default
retrieval). Tests that change the model's versions also need TFSERVING_MODEL_BASE_PATH, the
folder that server watches, writable from here; the monitoring test needs
TFSERVING_METRICS_PATH, the path its --monitoring_config_file serves Prometheus metrics at; the
tests of Classify, Regress, MultiInference and TF Serving's input rules need
TFSERVING_TOY_MODEL_NAME, a model that server serves from `python -m tests.toy_models DIR`.
Stock TF Serving has no ScaNN ops: give it a
model pushed with `--index brute-force`, or use the TF Serving + ScaNN image (serving/docker/).
"""
import dataclasses
import os
import pathlib
import shutil
import socket
from typing import Optional

from serving.client import GrpcClient, RestClient

REAL_SERVER_VARIABLES = ('TFSERVING_REST_URL', 'TFSERVING_GRPC_TARGET')


@dataclasses.dataclass
class Endpoints:
  name: str  # 'local' or 'tfserving'
  rest_url: str
  grpc_target: str
  model: str
  base_path: Optional[pathlib.Path]  # None: the tests cannot change the model's versions
  metrics_path: Optional[str] = None  # the Prometheus page on the REST port; None: not served

  def rest(self) -> RestClient:
    return RestClient(self.rest_url, self.model)

  def grpc(self) -> GrpcClient:
    return GrpcClient(self.grpc_target, self.model)


def real_tf_serving() -> Optional[Endpoints]:
  if not all(os.environ.get(name) for name in REAL_SERVER_VARIABLES):
    return None
  base_path = os.environ.get('TFSERVING_MODEL_BASE_PATH')
  return Endpoints('tfserving', os.environ['TFSERVING_REST_URL'],
                   os.environ['TFSERVING_GRPC_TARGET'],
                   os.environ.get('TFSERVING_MODEL_NAME', 'retrieval'),
                   pathlib.Path(base_path) if base_path else None,
                   os.environ.get('TFSERVING_METRICS_PATH'))


def real_tf_serving_toy_model() -> Optional[Endpoints]:
  """The real TF Serving's half-plus-two model (tests/toy_models.py), if it serves one."""
  real = real_tf_serving()
  if real is None or not os.environ.get('TFSERVING_TOY_MODEL_NAME'):
    return None
  return dataclasses.replace(real, model=os.environ['TFSERVING_TOY_MODEL_NAME'],
                             base_path=None)


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def push_version(source_version: pathlib.Path, base_path: pathlib.Path, version: int) -> pathlib.Path:
  """Copies a SavedModel folder in as a new version the way TFX's Pusher does: every file
  but saved_model.pb first, saved_model.pb last (its arrival marks the version complete)."""
  target = base_path / str(version)
  shutil.copytree(source_version, target, ignore=shutil.ignore_patterns('saved_model.pb'))
  shutil.copy2(source_version / 'saved_model.pb', target / 'saved_model.pb')
  return target
