"""Server-side batching: concurrent requests to one signature run as one model call.

Semantics follow TF Serving's batching parameters: a batch runs once it holds max_batch_size
rows or once its oldest request has waited batch_timeout_micros; num_batch_threads batches run
at a time; beyond max_enqueued_batches full batches of waiting requests, requests are refused
(UNAVAILABLE) instead of queueing without bound. Requests only share a batch when their inputs
have the same dtypes and the same shape past the batch dimension (no padding). A request larger
than max_batch_size runs on its own, unbatched.

If a batch fails, each of its requests is re-run alone, so one bad request (too many
exclude_movie_ids, say) gets its own error and never fails the requests it was batched with.
"""
import dataclasses
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import numpy as np

from serving.config_files import BatchingParameters
from serving.errors import ServingError

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass
class _Request:
  inputs: Arrays
  rows: int
  enqueued: float
  done: threading.Event = dataclasses.field(default_factory=threading.Event)
  outputs: Optional[Arrays] = None
  error: Optional[BaseException] = None


def _batch_key(inputs: Arrays) -> Optional[Tuple]:
  """Requests with equal keys can be concatenated; None: not batchable (no batch dimension)."""
  if not inputs or any(array.ndim == 0 for array in inputs.values()):
    return None
  if len({array.shape[0] for array in inputs.values()}) != 1:
    return None
  return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))


class Batcher:
  """Wraps run(inputs) -> outputs; calling the Batcher blocks until the request's rows are back."""

  def __init__(self, run: Callable[[Arrays], Arrays], parameters: BatchingParameters):
    self._run = run
    self._parameters = parameters
    self._timeout = parameters.batch_timeout_micros / 1e6
    self._queues: Dict[Tuple, List[_Request]] = {}
    self._waiting_rows = 0
    self._closed = False
    self._changed = threading.Condition()
    self._threads = [threading.Thread(target=self._work, daemon=True, name=f'batch-{i}')
                     for i in range(parameters.num_batch_threads)]
    for thread in self._threads:
      thread.start()

  def __call__(self, inputs: Arrays) -> Arrays:
    key = _batch_key(inputs)
    rows = next(iter(inputs.values())).shape[0] if key else 0
    if key is None or rows == 0 or rows > self._parameters.max_batch_size:
      return self._run(inputs)
    request = _Request(inputs, rows, time.monotonic())
    with self._changed:
      if self._closed:
        return self._run(inputs)
      limit = self._parameters.max_enqueued_batches * self._parameters.max_batch_size
      if self._waiting_rows + rows > limit:
        raise ServingError(grpc.StatusCode.UNAVAILABLE,
                           'The batch scheduling queue to which this task was submitted is full')
      self._queues.setdefault(key, []).append(request)
      self._waiting_rows += rows
      self._changed.notify_all()
    request.done.wait()
    if request.error is not None:
      raise request.error
    return request.outputs

  def close(self) -> None:
    """Runs what is queued, then stops the batch threads."""
    with self._changed:
      self._closed = True
      self._changed.notify_all()
    for thread in self._threads:
      thread.join()

  def _queued_rows(self, key) -> int:
    return sum(request.rows for request in self._queues.get(key, ()))

  def _next_batch(self) -> Optional[List[_Request]]:
    """Waits for a full or timed-out batch (oldest request first); None once closed and empty."""
    with self._changed:
      while True:
        if not self._queues:
          if self._closed:
            return None
          self._changed.wait()
          continue
        key = min(self._queues, key=lambda k: self._queues[k][0].enqueued)
        deadline = self._queues[key][0].enqueued + self._timeout
        remaining = deadline - time.monotonic()
        if (self._queued_rows(key) < self._parameters.max_batch_size and remaining > 0
            and not self._closed):
          self._changed.wait(remaining)
          continue
        queue, batch, rows = self._queues[key], [], 0
        while queue and rows + queue[0].rows <= self._parameters.max_batch_size:
          request = queue.pop(0)
          batch.append(request)
          rows += request.rows
        if not queue:
          del self._queues[key]
        self._waiting_rows -= rows
        return batch

  def _work(self) -> None:
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      self._execute(batch)

  def _execute(self, batch: List[_Request]) -> None:
    if len(batch) > 1:
      rows = sum(request.rows for request in batch)
      try:
        outputs = self._run({name: np.concatenate([request.inputs[name] for request in batch])
                             for name in batch[0].inputs})
        if all(array.ndim > 0 and array.shape[0] == rows for array in outputs.values()):
          start = 0
          for request in batch:
            request.outputs = {name: array[start:start + request.rows]
                               for name, array in outputs.items()}
            start += request.rows
            request.done.set()
          return
      except Exception:  # noqa: BLE001  (each request is re-run below and gets its own error)
        pass
    for request in batch:
      try:
        request.outputs = self._run(request.inputs)
      except Exception as error:  # noqa: BLE001  (handed to the waiting request's thread)
        request.error = error
      request.done.set()
