"""The Trainer's run_fn on two MultiWorkerMirrored worker processes on loopback (TF_CONFIG), over
the first run's Transform output: both train in step, and the chief's model serves."""
import json
import re

import numpy as np
import pytest

from benchmarks import distributed_trainer
from components.model.distribution import cluster_from_tf_config
from tests.conftest import TOP_K

EPOCHS = 2


@pytest.fixture(scope='module')
def two_workers(first_run, tmp_path_factory):
  """The retrieval model (one member, EPOCHS epochs) trained by two workers: their run and the
  training split's size."""
  from components.model.config import ModelConfig
  _, workdir, _ = first_run
  outputs = distributed_trainer.transform_outputs(str(workdir))
  config = ModelConfig.tuned('retrieval', epochs=EPOCHS, ensemble_size=1, top_k=TOP_K,
                             distribution='multi-worker-mirrored')
  run = distributed_trainer.train(outputs['transform_graph'], outputs['examples'],
                                  str(tmp_path_factory.mktemp('two_workers')), config,
                                  workers=2, timeout=300)
  assert run.ok, '\n'.join(log[-3000:] for log in run.logs)
  return run, distributed_trainer.training_examples(outputs['examples']), config


def _trained(log: str):
  """(worker index, steps, weights fingerprint) from a worker's log."""
  match = re.search(r'worker (\d) of 2 \S+ trained member 0 for (\d+) steps; weights '
                    r'fingerprint ([\d.e+-]+)', log)
  assert match, log[-3000:]
  return int(match.group(1)), int(match.group(2)), float(match.group(3))


def test_both_workers_take_every_step_and_end_with_the_same_weights(two_workers):
  """Each step all-reduces the two workers' gradients: both take the epochs' steps (the global
  batch's, ceil(examples / batch_size) per epoch) and hold the same weights at the end."""
  run, examples, config = two_workers
  (chief, chief_steps, chief_weights), (other, other_steps, other_weights) = map(
      _trained, run.logs)
  assert (chief, other) == (0, 1)
  assert chief_steps == other_steps == EPOCHS * -(-examples // config.batch_size)
  assert chief_weights == pytest.approx(other_weights, rel=1e-9)
  for log in run.logs:
    assert 'done; 2 replicas finished' in log  # the closing barrier saw both


def test_only_the_chief_logs_the_epoch_metrics(two_workers):
  """The catalogue top-k callback and TensorBoard's writer run on the chief alone."""
  run, _, _ = two_workers
  assert 'val_top_10_accuracy' in run.logs[0]
  assert 'val_top_10_accuracy' not in run.logs[1]


def test_the_chiefs_exported_model_serves(two_workers):
  import tensorflow as tf
  run, _, _ = two_workers
  model = tf.saved_model.load(run.serving_model_dir)
  answer = model.signatures['serving_default'](user_id=tf.constant(['1', 'no-such-user']))
  ids = answer['movie_ids'].numpy()
  assert ids.shape == (2, TOP_K) and len(set(ids[0])) == TOP_K
  assert answer['strategy'].numpy().tolist() == [b'user', b'popular']
  assert np.all(np.diff(answer['scores'].numpy()[0]) <= 1e-5)  # best first


@pytest.mark.parametrize('tf_config, named', [
    ('{"cluster": {"worker": ["a:1"]}', 'not JSON'),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker"}}', "['ps']"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker"}}', '"host:port"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', '"task"'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     'task index 2'),
])
def test_a_bad_tf_config_is_refused_naming_what_is_wrong(tf_config, named):
  with pytest.raises(ValueError, match=re.escape(named)):
    cluster_from_tf_config(tf_config)


def test_the_chief_is_worker_zero_or_the_chief_task():
  workers = json.dumps({'worker': ['a:1', 'b:2']})
  assert cluster_from_tf_config(
      f'{{"cluster": {workers}, "task": {{"type": "worker", "index": 1}}}}').index == 1
  with_chief = cluster_from_tf_config(json.dumps(
      {'cluster': {'chief': ['c:0'], 'worker': ['a:1']}, 'task': {'type': 'worker', 'index': 0}}))
  assert (with_chief.workers, with_chief.index, with_chief.is_chief) == (
      ['chief:0', 'worker:0'], 1, False)
  assert cluster_from_tf_config(None).is_chief
