"""Server-side batching: concurrent requests share model calls and keep their own results."""
import threading
import time

import grpc
import numpy as np
import pytest

from serving.batching import Batcher
from serving.config_files import BatchingParameters
from serving.errors import ServingError, invalid_argument


class CountingModel:
  """Doubles its input; records the batch sizes it was called with; rejects negative values."""

  def __init__(self, delay=0.0):
    self.batch_sizes, self.delay = [], delay
    self._lock = threading.Lock()

  def __call__(self, inputs):
    with self._lock:
      self.batch_sizes.append(len(inputs['x']))
    time.sleep(self.delay)
    if (inputs['x'] < 0).any():
      raise invalid_argument(f'negative input {inputs["x"][inputs["x"] < 0][0]}')
    return {'y': inputs['x'] * 2, 'label': np.array([f'row {v}' for v in inputs['x']], object)}


def _concurrently(batcher, values):
  results, threads = {}, []

  def call(value):
    try:
      results[value] = batcher({'x': np.array([value], np.int64)})
    except ServingError as error:
      results[value] = error

  for value in values:
    threads.append(threading.Thread(target=call, args=(value,)))
    threads[-1].start()
  for thread in threads:
    thread.join()
  return results


def test_concurrent_requests_run_in_fewer_calls_with_their_own_rows():
  model = CountingModel(delay=0.01)
  batcher = Batcher(model, BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000,
                                              num_batch_threads=1))
  results = _concurrently(batcher, range(16))
  batcher.close()
  for value, outputs in results.items():
    assert outputs['y'].tolist() == [2 * value]
    assert outputs['label'].tolist() == [f'row {value}']
  assert sum(model.batch_sizes) == 16
  assert len(model.batch_sizes) < 16 and max(model.batch_sizes) <= 8


def test_a_bad_request_fails_alone_not_its_batch():
  model = CountingModel()
  batcher = Batcher(model, BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000))
  results = _concurrently(batcher, [1, 2, -3, 4])
  batcher.close()
  assert isinstance(results[-3], ServingError) and results[-3].code == grpc.StatusCode.INVALID_ARGUMENT
  assert 'negative input -3' in results[-3].message
  assert [results[v]['y'].tolist() for v in (1, 2, 4)] == [[2], [4], [8]]


def test_requests_over_max_batch_size_run_unbatched():
  model = CountingModel()
  batcher = Batcher(model, BatchingParameters(max_batch_size=4, batch_timeout_micros=1000))
  assert batcher({'x': np.arange(10)})['y'].tolist() == list(range(0, 20, 2))
  assert model.batch_sizes == [10]
  batcher.close()


def test_a_full_queue_refuses_with_unavailable():
  model = CountingModel(delay=0.3)
  batcher = Batcher(model, BatchingParameters(max_batch_size=1, batch_timeout_micros=0,
                                              max_enqueued_batches=1, num_batch_threads=1))
  results = _concurrently(batcher, range(6))
  batcher.close()
  refused = [r for r in results.values() if isinstance(r, ServingError)]
  assert refused and all(r.code == grpc.StatusCode.UNAVAILABLE for r in refused)
  assert any(not isinstance(r, ServingError) for r in results.values())


def test_batching_parameters_are_validated():
  with pytest.raises(ValueError, match='max_batch_size'):
    BatchingParameters(max_batch_size=0)


def test_requests_of_other_shapes_batch_separately():
  model = CountingModel()
  batcher = Batcher(model, BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000,
                                              num_batch_threads=1))
  inputs = {i: np.full((1, 1 + i % 2), i, np.int64) for i in range(4)}  # [1, 1] and [1, 2]
  results = {}
  threads = [threading.Thread(target=lambda i=i: results.update({i: batcher({'x': inputs[i]})}))
             for i in inputs]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  batcher.close()
  assert sorted(model.batch_sizes) == [2, 2]
  for i, outputs in results.items():
    assert outputs['y'].tolist() == (2 * inputs[i]).tolist()
