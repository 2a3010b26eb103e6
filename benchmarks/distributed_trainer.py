"""The Trainer on local processes: one process against MultiWorkerMirrored workers on loopback.

Each worker is a process of its own that calls the real components.trainer.run_fn with TFX's
FnArgs (fn_args_utils.get_common_fn_args, as the Trainer executor makes them) over a pipeline
run's Transform output, and with TF_CONFIG naming every worker on 127.0.0.1, as Kubeflow's or
Vertex AI's training pods get it. They share the output folders, as the pods do.

    python -m benchmarks.distributed_trainer --workdir WORKDIR [--workers 2] [--epochs 3]

times the Trainer on WORKDIR's latest run (a `pipeline run` workdir) in one process, then on
--workers workers, and prints wall time and training examples per second of each. `compare`
is the function bench-pipeline may call; `train` runs one configuration (the multi-worker test
uses it).
"""
import argparse
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import components  # noqa: F401  (process set-up before TensorFlow loads)
from components.model.config import ModelConfig

# What each worker prints when run_fn returns (parsed back by train()).
_RUN_FN_SECONDS = 'run_fn seconds: '


@dataclasses.dataclass
class WorkerRun:
  """One configuration's run: each worker's exit code and log (stdout and stderr), and times.

  wall_seconds: from starting the processes to the last one's exit (imports included);
  run_fn_seconds: each worker's time inside run_fn (reading, training, the chief's export).
  """
  exit_codes: List[int]
  logs: List[str]
  wall_seconds: float
  run_fn_seconds: List[Optional[float]]
  serving_model_dir: str

  @property
  def ok(self) -> bool:
    return all(code == 0 for code in self.exit_codes)


def transform_outputs(workdir: str) -> Dict[str, str]:
  """The latest run's Transform outputs in a `pipeline run` workdir: transform_graph and
  transformed examples URIs."""
  from pipeline.results import latest_run_results
  outputs = latest_run_results(os.path.join(workdir, 'metadata.sqlite')).outputs
  return {'transform_graph': outputs[('Transform', 'TransformGraph')],
          'examples': outputs[('Transform', 'Examples')]}


def fn_args(transform_graph: str, examples: str, output_dir: str, custom_config: dict,
            train_splits: Sequence[str] = ('train',)):
  """TFX's FnArgs for a Trainer over these Transform outputs, training on train_splits (the
  pipeline's Trainer: train; its refit: every split), writing under output_dir (model/ and
  model_run/, as the Trainer's Model and ModelRun artifacts)."""
  from components.model.config import TRAIN_SPLITS_KEY
  from tfx.components.trainer import fn_args_utils
  from tfx.types import artifact_utils, standard_artifacts
  from tfx.utils import path_utils

  examples_artifact = standard_artifacts.Examples()
  examples_artifact.uri = examples
  examples_artifact.split_names = artifact_utils.encode_split_names(sorted(
      name[len('Split-'):] for name in os.listdir(examples) if name.startswith('Split-')))
  graph_artifact = standard_artifacts.TransformGraph()
  graph_artifact.uri = transform_graph
  args = fn_args_utils.get_common_fn_args(
      {'examples': [examples_artifact], 'transform_graph': [graph_artifact]},
      {'train_args': json.dumps({'splits': list(train_splits)}),
       'eval_args': json.dumps({'splits': ['eval']}),
       'custom_config': json.dumps({**custom_config, TRAIN_SPLITS_KEY: list(train_splits)})})
  model_dir = os.path.join(output_dir, 'model')
  args.transform_output = args.transform_graph_path
  args.serving_model_dir = path_utils.serving_model_dir(model_dir)
  args.eval_model_dir = path_utils.eval_model_dir(model_dir)
  args.model_run_dir = os.path.join(output_dir, 'model_run')
  return args


def _worker(arguments_json: str) -> int:
  """A worker process: run_fn on the FnArgs of the arguments, then how long it took."""
  import absl.logging
  absl.logging.set_verbosity(absl.logging.INFO)
  from components.trainer import run_fn
  arguments = json.loads(arguments_json)
  started = time.perf_counter()
  run_fn(fn_args(**arguments))
  print(f'{_RUN_FN_SECONDS}{time.perf_counter() - started:.2f}', flush=True)
  return 0


def free_ports(count: int) -> List[int]:
  """Ports free on 127.0.0.1 now (held together while chosen, so they differ)."""
  sockets = [socket.socket() for _ in range(count)]
  try:
    for held in sockets:
      held.bind(('127.0.0.1', 0))
    return [held.getsockname()[1] for held in sockets]
  finally:
    for held in sockets:
      held.close()


def train(transform_graph: str, examples: str, output_dir: str, config: ModelConfig,
          workers: int = 1, timeout: float = 900, one_core_each: bool = False) -> WorkerRun:
  """Runs the Trainer's run_fn with config on `workers` local processes, writing under
  output_dir; one worker gets no TF_CONFIG. Each worker's log is output_dir/worker-<i>.log.
  one_core_each: worker i runs on CPU core i alone (as if each had a machine of one core)."""
  if one_core_each and workers > os.cpu_count():
    raise ValueError(f'{workers} workers, one core each, on {os.cpu_count()} cores')
  os.makedirs(output_dir, exist_ok=True)
  addresses = [f'127.0.0.1:{port}' for port in free_ports(workers)]
  arguments = json.dumps({'transform_graph': transform_graph, 'examples': examples,
                          'output_dir': output_dir, 'custom_config': config.to_dict()})
  log_paths = [os.path.join(output_dir, f'worker-{index}.log') for index in range(workers)]
  processes = []
  started = time.perf_counter()
  for index, log_path in enumerate(log_paths):
    environment = {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
    environment.pop('TF_CONFIG', None)
    if workers > 1:
      environment['TF_CONFIG'] = json.dumps(
          {'cluster': {'worker': addresses}, 'task': {'type': 'worker', 'index': index}})
    with open(log_path, 'w') as log:
      processes.append(subprocess.Popen(
          [sys.executable, '-m', 'benchmarks.distributed_trainer', 'worker', arguments],
          stdout=log, stderr=subprocess.STDOUT, env=environment,
          preexec_fn=(lambda core=index: os.sched_setaffinity(0, {core})) if one_core_each
          else None,
          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  exit_codes = []
  try:
    for process in processes:
      exit_codes.append(process.wait(timeout=max(1.0, timeout - (time.perf_counter() - started))))
  finally:
    for process in processes:  # a worker left waiting on a dead peer's collective
      if process.poll() is None:
        process.kill()
        process.wait()
  wall = time.perf_counter() - started
  logs = [open(path).read() for path in log_paths]
  seconds = [re.search(rf'^{_RUN_FN_SECONDS}([\d.]+)$', log, re.M) for log in logs]
  from tfx.utils import path_utils
  return WorkerRun(exit_codes, logs, wall, [float(s.group(1)) if s else None for s in seconds],
                   path_utils.serving_model_dir(os.path.join(output_dir, 'model')))


def training_examples(examples: str) -> int:
  """Rows of the transformed train split."""
  import tensorflow as tf
  files = tf.io.gfile.glob(os.path.join(examples, 'Split-train', '*'))
  return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))


def _epoch_seconds(log: str) -> List[float]:
  """Each epoch's seconds from Keras' verbose=2 lines ('79/79 - 5s - loss: ... - 5s/epoch')."""
  return [float(value) * (0.001 if unit == 'ms' else 1)
          for value, unit in re.findall(r'- ([\d.]+)(m?s)/epoch', log)]


def compare(workdir: str, output_dir: str, workers: int = 2, epochs: int = 3,
            kind: str = 'retrieval', one_core_each: bool = False, **overrides) -> List[dict]:
  """The Trainer on workdir's Transform output in one process, then on `workers` local
  MultiWorkerMirrored workers, the same config otherwise (one model, `epochs` epochs); one row
  per configuration: wall seconds, run_fn seconds (the slowest worker's), training examples
  per second over run_fn, and the steady epoch's seconds (the last; the first traces the
  graphs). one_core_each: every process on a CPU core of its own (see train)."""
  outputs = transform_outputs(workdir)
  rows_per_epoch = training_examples(outputs['examples'])
  config = ModelConfig.tuned(kind, epochs=epochs, ensemble_size=1, **overrides)
  rows = []
  for count, distribution in ((1, 'one-process'), (workers, 'multi-worker-mirrored')):
    run = train(outputs['transform_graph'], outputs['examples'],
                os.path.join(output_dir, f'{distribution}-{count}'),
                dataclasses.replace(config, distribution=distribution), workers=count,
                one_core_each=one_core_each)
    if not run.ok:
      raise RuntimeError(f'{distribution} on {count} workers failed (exit codes '
                         f'{run.exit_codes}); logs in {output_dir}')
    slowest = max(run.run_fn_seconds)
    rows.append({'distribution': distribution, 'workers': count,
                 'wall_seconds': round(run.wall_seconds, 1), 'run_fn_seconds': slowest,
                 'examples_per_second': round(rows_per_epoch * epochs / slowest, 1),
                 'last_epoch_seconds': max(_epoch_seconds(log)[-1] for log in run.logs)})
  return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ['worker']:
    return _worker(argv[1])
  parser = argparse.ArgumentParser(prog='python -m benchmarks.distributed_trainer',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='a `pipeline run` workdir: its latest Transform output is trained on')
  parser.add_argument('--output-dir', help='where the models and worker logs go '
                      '(default: <workdir>/distributed_trainer)')
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--model', default='retrieval', help='the model kind of the workdir')
  parser.add_argument('--batch-size', type=int, help='examples per step, all workers together')
  parser.add_argument('--one-core-each', action='store_true',
                      help='every process on a CPU core of its own (one process: one core)')
  args = parser.parse_args(argv)
  overrides = {'batch_size': args.batch_size} if args.batch_size else {}
  output_dir = args.output_dir or os.path.join(args.workdir, 'distributed_trainer')
  print(f'Timing the Trainer on {args.workdir}; models and worker logs in {output_dir}')
  print_rows(compare(args.workdir, output_dir, args.workers, args.epochs, args.model,
                     args.one_core_each, **overrides))
  return 0


def print_rows(rows: List[dict]) -> None:
  """compare's rows as a table."""
  print(f'{"distribution":<24}{"workers":>8}{"wall s":>9}{"run_fn s":>10}{"examples/s":>12}'
        f'{"last epoch s":>14}')
  for row in rows:
    print(f'{row["distribution"]:<24}{row["workers"]:>8}{row["wall_seconds"]:>9}'
          f'{row["run_fn_seconds"]:>10}{row["examples_per_second"]:>12}'
          f'{row["last_epoch_seconds"]:>14}')


if __name__ == '__main__':
  sys.exit(main())
