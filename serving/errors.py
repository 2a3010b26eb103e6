"""Errors the server returns, with TF Serving's status codes and their HTTP equivalents.

Every failure that reaches a client is a ServingError: REST writes `{"error": message}` with
the HTTP status below, gRPC aborts the call with the same code and message.
"""
import re
from typing import Optional

import grpc
import tensorflow as tf

# TF Serving's mapping from status code to HTTP status (model_servers/http_rest_api_handler).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# TensorFlow's error codes are the canonical codes gRPC uses: same numbers, same names.
_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


# Lines of TensorFlow's error text that describe the graph, not the request.
_TRACE_LINES = ('Graph execution error', 'Detected at node', '<stack traces')


class ServingError(Exception):
  """A request failed; code is a grpc.StatusCode, message says what and where.

  http_status overrides the code's HTTP status for failures only HTTP has (a request that
  stalled mid-body is a 408, not DEADLINE_EXCEEDED's 504: the client was slow, not the model).
  """

  def __init__(self, code: grpc.StatusCode, message: str, http_status: Optional[int] = None):
    super().__init__(message)
    self.code = code
    self.message = message
    self._http_status = http_status

  @property
  def http_status(self) -> int:
    return self._http_status or HTTP_STATUS.get(self.code, 500)


def invalid_argument(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def request_timeout(message: str) -> ServingError:
  """HTTP 408: the client stopped sending its request before the end."""
  return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, message, http_status=408)


def from_tensorflow(error: tf.errors.OpError) -> ServingError:
  """The model's own error (a failed check in the graph, say), with its code and first lines."""
  lines = [line.strip() for line in error.message.splitlines()
           if line.strip() and '{{node' not in line and not line.startswith(_TRACE_LINES)]
  message = re.sub(r'\s*\[Op:[^\]]*\]$', '', ' '.join(lines)) or error.message
  return ServingError(_STATUS_BY_NUMBER.get(error.error_code, grpc.StatusCode.INTERNAL), message)
