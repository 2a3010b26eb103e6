"""make bench-training: how fast the Trainer's step is, and how far from this machine's peak.

Reads a finished pipeline run's Transform output (--run-workdir: a `pipeline run` workdir,
e.g. one of bench-replay's runs), builds the model the Trainer builds (the kind's tuned
settings, then `pipeline run`'s model flags: --batch-size 128, --model retrieval...) and
measures, after a warm-up:

- the input pipeline alone: one pass over the training batches (for every-position training:
  the window ends, read once and then kept in memory, as the Trainer does);
- training steps (Model.fit over the same batches): examples (and, for every-position
  training, positions trained) per second;
- the validation pass of one epoch (epoch_metrics.CatalogueTopK over its first examples),
  the first (which traces it) and a later one;
- the floating-point operations of one training step: those of the catalogue softmax's two
  matmuls, exactly (each trained position's query against every movie, forward and both
  gradients: 6 x positions x movies x dimension; with catalogue negatives, the step's largest
  ops), and all TensorFlow's profiler counts on the traced step's graph (the ops whose shapes
  are static there: the softmax's are not, they follow the batch's real positions); and the
  achieved FLOP/s of the larger count against this machine's measured peak, a large float32
  matmul, the best any op reaches here.

Prints every figure; writes nothing.
"""
import argparse
import os
import sys
import time
from typing import Dict, List, Optional

import components  # noqa: F401  (process set-up before TensorFlow loads)
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from components import features as f
from components.model.catalogue import Catalogue
from components.model.config import ModelConfig
from components.model.epoch_metrics import CatalogueTopK
from components.trainer import _movie_table_size, _optimizer, build_model, window_ends
from pipeline import cli
from pipeline.results import latest_run_results


def transform_outputs(workdir: str) -> Dict[str, str]:
  """The Transform's graph and examples of the latest run in a pipeline workdir."""
  outputs = latest_run_results(os.path.join(workdir, 'metadata.sqlite')).outputs
  return {'graph': outputs[('Transform', 'TransformGraph')],
          'examples': outputs[('Transform', 'Examples')]}


def matmul_peak(size: int = 2048, repeats: int = 20) -> float:
  """FLOP/s of a float32 [size, size] x [size, size] matmul, the best of a few timings."""
  a = tf.random.normal([size, size])
  b = tf.random.normal([size, size])
  step = tf.function(lambda: tf.matmul(a, b))
  step()
  best = float('inf')
  for _ in range(3):
    started = time.perf_counter()
    for _ in range(repeats):
      result = step()
    _ = result.numpy()
    best = min(best, (time.perf_counter() - started) / repeats)
  return 2 * size ** 3 / best


def step_flops(model: tf.keras.Model, batch) -> Optional[float]:
  """Floating-point operations of one training step (forward, gradients, update) as
  TensorFlow's profiler counts them on the step's graph; None if it counts none."""

  @tf.function
  def train_step(batch):
    return model.train_step(batch)

  graph = train_step.get_concrete_function(batch).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  profile = tf.compat.v1.profiler.profile(graph, options=options)
  return float(profile.total_float_ops) or None


def positions(batch, config: ModelConfig) -> int:
  """The next movies one batch trains: one per example, or per context movie (every)."""
  if config.train_positions != 'every':
    return int(tf.shape(batch[f.MOVIE_ID_INDEX])[0])
  lengths = tf.RaggedTensor.from_sparse(batch[f.CONTEXT_MOVIE_ID_INDICES]).row_lengths()
  return int(tf.reduce_sum(tf.minimum(lengths, config.max_context_length)))


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.training_step', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--run-workdir', required=True,
                      help='a `pipeline run` workdir whose Transform output to train on')
  parser.add_argument('--timed-epochs', type=int, default=3,
                      help='epochs timed after the first (default: 3)')
  cli.add_model_arguments(parser)
  args = parser.parse_args(argv)
  config = cli.model_config_from_args(args)
  outputs = transform_outputs(args.run_workdir)
  tft_output = tft.TFTransformOutput(outputs['graph'])

  def split(name):
    return tfxio.TFExampleRecord(
        os.path.join(outputs['examples'], f'Split-{name}', '*'),
        schema=tft_output.transformed_metadata.schema,
    ).TensorFlowDataset(tfxio.TensorFlowDatasetOptions(
        batch_size=config.batch_size, num_epochs=1, shuffle=False))

  train = split('train')
  catalogue = Catalogue.from_dataset(train)
  batches = (window_ends(train, config.batch_size, config.seed)
             if config.train_positions == 'every' else train.cache())
  started = time.perf_counter()
  steps = sum(1 for _ in batches)
  first_pass = time.perf_counter() - started
  started = time.perf_counter()
  trained = sum(positions(batch, config) for batch in batches)
  later_pass = time.perf_counter() - started

  tf.keras.utils.set_random_seed(config.seed)
  model = build_model(config, tft_output, catalogue)
  model.compile(optimizer=_optimizer(config, model))
  started = time.perf_counter()
  model.fit(batches, epochs=1, verbose=0)
  first_epoch = time.perf_counter() - started
  started = time.perf_counter()
  model.fit(batches, epochs=args.timed_epochs, verbose=0)
  epoch = (time.perf_counter() - started) / args.timed_epochs

  validation = CatalogueTopK(split('valid' if os.path.isdir(os.path.join(
      outputs['examples'], 'Split-valid')) else 'eval'), catalogue.candidate_features(),
      catalogue.positions(_movie_table_size(tft_output)))
  validation.set_model(model)
  validating = []
  for _ in range(2):
    started = time.perf_counter()
    validation.on_epoch_end(0, {})
    validating.append(time.perf_counter() - started)

  counted = step_flops(model, next(iter(batches))) or 0.0
  softmax = (6.0 * trained / steps * len(catalogue) * config.layer_sizes[-1]
             if config.negatives == 'catalogue' else 0.0)
  flops = max(counted, softmax)
  peak = matmul_peak()
  step_seconds = epoch / steps
  print(f'Model: {config.kind}, {config.history_encoder}, train_positions {config.train_positions}, '
        f'batch {config.batch_size}, context {config.max_context_length}, '
        f'{len(catalogue):,} movies; {os.cpu_count()} CPUs')
  print(f'Input pipeline: first pass {first_pass:.2f} s ({steps} batches), later passes '
        f'{later_pass:.2f} s')
  print(f'Training: first epoch {first_epoch:.2f} s (tracing included), then {epoch:.2f} s an '
        f'epoch, {1000 * step_seconds:.1f} ms a step; {trained / epoch:,.0f} next movies '
        f'trained a second ({trained:,} an epoch)')
  print(f'Validation pass: {validating[0]:.2f} s the first (tracing included), then '
        f'{validating[1]:.2f} s')
  print(f'A step: the catalogue softmax {softmax / 1e9:.3f} GFLOP, the profiler counts '
        f'{counted / 1e9:.3f} GFLOP; {flops / step_seconds / 1e9:.1f} GFLOP/s achieved, against '
        f'a {peak / 1e9:.1f} GFLOP/s float32 matmul on this machine '
        f'({flops / step_seconds / peak:.1%} of it)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
