"""How the Trainer spreads training over processes: one class per `tf.distribute` strategy.

`Distribution` is the contract; `OneProcess` (the default: today's training, unchanged) and
`MultiWorkerMirrored` (synchronous data parallelism over the workers TF_CONFIG names) are the
variants, and `DISTRIBUTIONS` the registry that ModelConfig.distribution names (the CLI's
--distribution). components/trainer.py asks the distribution, never its name:
- `start()`: reads the cluster (TF_CONFIG) and creates the strategy; call it before TensorFlow
  runs its first op in the process (multi-worker collectives are configured at start-up);
- `scope()`: the models and optimizers are built in it (variables mirrored on every worker);
- `training_config`, `fit_arguments`, `callbacks`: what fit gets on this worker;
- `exportable`: the trained model as the export reads it; `writes_outputs`: whether this
  worker writes the SavedModels, warm-start weights and TensorBoard logs (the chief only);
- `finish`: every worker waits there until the chief has written them.

MultiWorkerMirrored, what `batch_size` means and why (docs/kubeflow.md has the measurement):
- batch_size stays the examples of one step, all workers together: each replica computes
  batch_size / replicas of them. The retrieval loss is a sum over the batch (TFRS's Retrieval
  task, Reduction.SUM) and the optimizer sums the replicas' gradients (apply_gradients'
  all-reduce), so a step's gradient is the one-process step's on the same global batch, and the
  tuned epochs and learning rates carry over. What changes: in-batch negatives are the
  replica's batch_size / replicas other movies, not batch_size (catalogue negatives, the tuned
  default, are unaffected).
- Regularization: TFRS's train_step adds sum(model.losses) on every replica and the gradients
  are then summed, which would count the L2 penalty once per replica: the replicas train with
  embedding_l2 / replicas (training_config), which sums back to embedding_l2.
- Input: every worker reads the whole split in the same shuffled order (the same seed),
  splits each global batch into per-replica pieces (Dataset.rebatch) and keeps its own (shard).
  No TF auto-sharding: Transform may write a single file, which file sharding cannot split.
  The shards repeat, and an epoch is ceil(examples / batch_size) steps on every worker, so no
  worker runs out of batches while another waits in a collective (a worker whose shard is one
  piece shorter starts its next pass a step early).
- Export: the chief copies the trained weights into a plain (undistributed) model and exports
  that; the other workers export nothing, and wait in `finish` (a collective) until the chief has
  written the SavedModels: TFX's Trainer executor fails a worker that returns before the serving
  model exists.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import absl.logging

if TYPE_CHECKING:  # annotations only: config.py imports this module, and --help stays TF-free
  import tensorflow as tf

  from components.model.config import ModelConfig

TF_CONFIG = 'TF_CONFIG'


@dataclasses.dataclass(frozen=True)
class Cluster:
  """The training processes and which one this is.

  workers: the chief and the workers, chief first (TF's order of task ids).
  index: this process's position among them; 0 is the chief (the 'chief' task, or worker 0
    when the cluster names no chief).
  """
  workers: List[str]
  index: int

  @property
  def is_chief(self) -> bool:
    return self.index == 0

  def __str__(self) -> str:
    return f'worker {self.index} of {len(self.workers)} ({self.workers[self.index]})'


def cluster_from_tf_config(text: Optional[str]) -> Cluster:
  """The cluster of a TF_CONFIG value ({"cluster": {"chief": [...], "worker": ["host:port", ...]},
  "task": {"type": "worker", "index": 1}}); unset or empty: this process alone.

  A wrong TF_CONFIG is a ValueError that names what is wrong in it.
  """
  if not text or not text.strip():
    return Cluster(workers=['local'], index=0)
  try:
    tf_config = json.loads(text)
  except json.JSONDecodeError as error:
    raise ValueError(f'{TF_CONFIG} is not JSON ({error}): {text[:200]!r}') from None
  if not isinstance(tf_config, dict) or not isinstance(tf_config.get('cluster'), dict):
    raise ValueError(f'{TF_CONFIG} has no "cluster" object (task type -> list of host:port): '
                     f'{text[:200]!r}')
  cluster = tf_config['cluster']
  unknown = sorted(set(cluster) - {'chief', 'worker'})
  if unknown:
    raise ValueError(
        f'{TF_CONFIG} names task types {unknown}: MultiWorkerMirrored trains on "chief" and '
        '"worker" tasks only (parameter servers and evaluators are not supported; '
        'docs/kubeflow.md)')
  for task_type, addresses in cluster.items():
    if (not isinstance(addresses, list) or not addresses or
        not all(isinstance(a, str) and a.rpartition(':')[2].isdigit() for a in addresses)):
      raise ValueError(f'{TF_CONFIG} cluster "{task_type}" must be a non-empty list of '
                       f'"host:port" strings, got {addresses!r}')
  if len(cluster.get('chief', [])) > 1:
    raise ValueError(f'{TF_CONFIG} names {len(cluster["chief"])} chiefs; at most one')
  task = tf_config.get('task')
  if not isinstance(task, dict) or task.get('type') not in cluster:
    raise ValueError(f'{TF_CONFIG} "task" must name this process\'s type, one of '
                     f'{sorted(cluster)}, and index: got {task!r}')
  index = task.get('index', 0)
  if not isinstance(index, int) or not 0 <= index < len(cluster[task['type']]):
    raise ValueError(f'{TF_CONFIG} task index {index!r} is not a position in the '
                     f'{len(cluster[task["type"]])} "{task["type"]}" addresses')
  chiefs = [f'chief:{i}' for i in range(len(cluster.get('chief', [])))]
  workers = chiefs + [f'worker:{i}' for i in range(len(cluster.get('worker', [])))]
  return Cluster(workers=workers, index=workers.index(f'{task["type"]}:{index}'))


def weights_fingerprint(model: tf.keras.Model) -> float:
  """The sum of every weight's absolute values: equal on workers that hold the same weights."""
  import numpy as np
  return float(sum(np.abs(np.asarray(weight, np.float64)).sum()
                   for weight in model.get_weights()))


class Distribution:
  """The contract every distribution fulfils; the subclasses are the variants (see above).

  Attributes:
    name: the ModelConfig.distribution value (--distribution).
    description: what it does, for the flag's help.
  """
  name: str
  description: str

  def __init__(self, strategy: tf.distribute.Strategy, cluster: Cluster):
    self.strategy, self.cluster = strategy, cluster

  @classmethod
  def start(cls) -> 'Distribution':
    """This process's part: the strategy over the cluster TF_CONFIG names."""
    raise NotImplementedError

  @property
  def replicas(self) -> int:
    return self.strategy.num_replicas_in_sync

  @property
  def writes_outputs(self) -> bool:
    """Whether this process writes the SavedModels, warm-start weights and logs."""
    return self.cluster.is_chief

  def scope(self):
    """Where the model and its optimizer are built."""
    return self.strategy.scope()

  def training_config(self, config: ModelConfig) -> ModelConfig:
    """The config the trained (not the exported) model is built from."""
    return config

  def fit_arguments(self, train: tf.data.Dataset, train_examples: Callable[[], int],
                    batch_size: int) -> Dict[str, Any]:
    """Model.fit's data arguments on this worker (no validation_data: the Trainer's epoch
    callbacks measure the validation split, components/model/epoch_metrics.py).

    train: one pass over the training split in batches of batch_size; train_examples(): its
    rows (counted only if needed).
    """
    raise NotImplementedError

  def callbacks(self, callbacks: List[tf.keras.callbacks.Callback]) -> list:
    """The epoch callbacks this worker runs (they only measure and log: the chief's)."""
    return callbacks if self.writes_outputs else []

  def exportable(self, trained: tf.keras.Model,
                 build: Callable[[], tf.keras.Model]) -> tf.keras.Model:
    """The trained model as the export reads it (on the workers that write outputs). build():
    a fresh model of the same config, its weights built, outside the strategy."""
    return trained

  def report(self, member: int, trained: tf.keras.Model) -> None:
    """Logs what this worker trained (with several workers: its steps and weights)."""

  def finish(self) -> None:
    """Returns once every worker has reached it (the chief after writing its outputs)."""


class OneProcess(Distribution):
  """This process trains alone (TF's default strategy): the Trainer as it always was."""
  name = 'one-process'
  description = 'this process trains alone'

  @classmethod
  def start(cls):
    import tensorflow as tf
    return cls(tf.distribute.get_strategy(), Cluster(workers=['local'], index=0))

  def scope(self):
    return contextlib.nullcontext()

  def fit_arguments(self, train, train_examples, batch_size):
    return {'x': train}


class MultiWorkerMirrored(Distribution):
  """Synchronous data parallelism: every worker holds all the weights, computes its share of
  each batch, and the workers sum their gradients (all-reduce) before each update."""
  name = 'multi-worker-mirrored'
  description = ("the workers in TF_CONFIG (Kubeflow's or Vertex AI's) train together, each "
                 'on its share of every batch (tf.distribute.MultiWorkerMirroredStrategy)')

  @classmethod
  def start(cls):
    cluster = cluster_from_tf_config(os.environ.get(TF_CONFIG))  # fails early and clearly
    import tensorflow as tf
    try:
      strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
      if 'program startup' not in str(error):
        raise
      raise RuntimeError(
          f'MultiWorkerMirrored over {TF_CONFIG} must start before TensorFlow runs its first op '
          'in the process (collectives are configured at start-up): run each worker in a '
          "process of its own (Kubeflow's and Vertex AI's pods do; locally, "
          'benchmarks/distributed_trainer.py)') from error
    absl.logging.info('MultiWorkerMirrored: %s, %d replicas in sync', cluster,
                      strategy.num_replicas_in_sync)
    return cls(strategy, cluster)

  def training_config(self, config):
    return dataclasses.replace(config, embedding_l2=config.embedding_l2 / self.replicas)

  def _shards(self, dataset: tf.data.Dataset, examples: int,
              batch_size: int) -> tuple:
    """(this worker's endless share of dataset, steps per pass over it)."""
    if batch_size % self.replicas:
      raise ValueError(f'batch_size {batch_size} is the examples of one step over all '
                       f'{self.replicas} replicas: it must be a multiple of {self.replicas}')
    per_replica = batch_size // self.replicas

    def shard(context):
      return dataset.rebatch(per_replica).shard(
          context.num_input_pipelines, context.input_pipeline_id).repeat()

    return (self.strategy.distribute_datasets_from_function(shard),
            max(1, math.ceil(examples / batch_size)))

  def fit_arguments(self, train, train_examples, batch_size):
    x, steps = self._shards(train, train_examples(), batch_size)
    return {'x': x, 'steps_per_epoch': steps}

  def exportable(self, trained, build):
    if not self.writes_outputs:
      return trained
    plain = build()
    if [w.shape for w in plain.weights] != [w.shape for w in trained.weights]:
      raise RuntimeError('the undistributed copy of the trained model has other weights: '
                         f'{[w.name for w in plain.weights]} vs {[w.name for w in trained.weights]}')
    plain.set_weights(trained.get_weights())
    return plain

  def report(self, member, trained):
    # Workers in sync hold equal weights: the test and the logs compare the fingerprints.
    absl.logging.info('MultiWorkerMirrored: %s trained member %d for %d steps; weights '
                      'fingerprint %r', self.cluster, member,
                      int(trained.optimizer.iterations.numpy()), weights_fingerprint(trained))

  def finish(self):
    import tensorflow as tf

    @tf.function
    def barrier():  # an all-reduce: it returns on every worker once all have called it
      return self.strategy.reduce(
          tf.distribute.ReduceOp.SUM, self.strategy.run(lambda: tf.constant(1)), axis=None)

    arrived = barrier()
    absl.logging.info('MultiWorkerMirrored: %s done; %d replicas finished', self.cluster,
                      int(arrived))


DEFAULT = OneProcess.name
# Every distribution, by name, in the order the --distribution help lists them.
DISTRIBUTIONS = {cls.name: cls for cls in (OneProcess, MultiWorkerMirrored)}


def of(name: str) -> type:
  """The distribution class called `name`; another name is a ValueError listing the known."""
  if name not in DISTRIBUTIONS:
    raise ValueError(f'distribution {name!r} is not one of {tuple(DISTRIBUTIONS)}')
  return DISTRIBUTIONS[name]


def described() -> str:
  """'one-process (...) or multi-worker-mirrored (...)', for the flag's help."""
  return ' or '.join(f'{cls.name} ({cls.description})' for cls in DISTRIBUTIONS.values())
