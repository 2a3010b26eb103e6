"""make bench-pipeline: wall time and peak memory per component, by data size and Beam mode.

Runs the whole pipeline (no cache) in a child process for each dataset and Beam preset while
sampling the resident memory of the child and all its workers every 0.2 s; each component's
peak is the largest sample inside its execution window (from MLMD). Datasets: ml-100k from
DATA_DIR (or a synthetic set of ml-100k's shape), and synthetic data SCALE times larger.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Tuple

import psutil

from components.ingest import synthetic
from pipeline.results import latest_run_results

ML100K_SHAPE = dict(num_users=943, num_movies=1682, num_ratings=100_000)


def _tree_rss(process: psutil.Process) -> int:
  total = 0
  for member in [process] + process.children(recursive=True):
    try:
      total += member.memory_info().rss
    except psutil.Error:
      pass
  return total


def run_and_sample(command: List[str]) -> Tuple[int, List[Tuple[float, int]], float]:
  """Runs command; returns its exit code, (epoch seconds, tree RSS bytes) samples, wall time."""
  samples: List[Tuple[float, int]] = []
  started = time.time()
  child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  watched = psutil.Process(child.pid)
  done = threading.Event()

  def sample():
    while not done.is_set():
      try:
        samples.append((time.time(), _tree_rss(watched)))
      except psutil.Error:
        break
      done.wait(0.2)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  _, stderr = child.communicate()
  done.set()
  sampler.join()
  if child.returncode not in (0, 3):
    sys.stderr.write(stderr[-3000:])
  return child.returncode, samples, time.time() - started


def component_figures(workdir: str, samples) -> List[Tuple[str, float, float]]:
  """(component, seconds, peak MiB) from MLMD's execution windows and the memory samples."""
  results = latest_run_results(os.path.join(workdir, 'metadata.sqlite'))
  figures = []
  for component, seconds, start, end in results.component_windows:
    inside = [rss for when, rss in samples if start <= when <= end]
    figures.append((component, seconds, max(inside, default=0) / 2**20))
  return figures


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.pipeline', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-dir', help='an ml-100k folder (default: synthetic, same shape)')
  parser.add_argument('--scale', type=int, default=10,
                      help='the larger synthetic set has this many times the ratings and users')
  parser.add_argument('--presets', default='in-memory,multi-processing',
                      help='Beam presets to compare (comma-separated)')
  parser.add_argument('--skip-large', action='store_true', help='only the ml-100k-sized run')
  parser.add_argument('--epochs', type=int, default=10)
  parser.add_argument('--ensemble-size', type=int, default=1,
                      help='models the Trainer trains (the retrieval default of 3 triples '
                      'its time; default: %(default)s, the figures docs/benchmarks.md reports)')
  parser.add_argument('--pipeline-arg', action='append', default=[], metavar='ARG',
                      help='an argument for every `pipeline run`, e.g. '
                      '--pipeline-arg=--model=retrieval (repeatable; default: the defaults)')
  args = parser.parse_args(argv)

  scratch = tempfile.mkdtemp(prefix='bench-pipeline-')
  datasets: Dict[str, str] = {}
  if args.data_dir:
    datasets['ml-100k'] = args.data_dir
  else:
    print('DATA_DIR not given: the small set is synthetic data of ml-100k\'s shape')
    datasets['synthetic-100k'] = str(synthetic.generate(f'{scratch}/small', **ML100K_SHAPE))
  if not args.skip_large:
    large = dict(ML100K_SHAPE, num_users=ML100K_SHAPE['num_users'] * args.scale,
                 num_ratings=ML100K_SHAPE['num_ratings'] * args.scale)
    datasets[f'synthetic-x{args.scale}'] = str(synthetic.generate(f'{scratch}/large', **large))

  print(f'machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB')
  for name, data_dir in datasets.items():
    for preset in args.presets.split(','):
      workdir = f'{scratch}/{name}-{preset}'
      command = [sys.executable, '-m', 'pipeline', 'run', '--data-dir', data_dir,
                 '--workdir', workdir, '--no-cache', '--min-accuracy', '0',
                 '--epochs', str(args.epochs), '--ensemble-size', str(args.ensemble_size),
                 '--beam-preset', preset, *args.pipeline_arg]
      print(f'\n== {name}, Beam preset {preset} ==', flush=True)
      exit_code, samples, wall = run_and_sample(command)
      if exit_code not in (0, 3):
        print(f'run failed (exit {exit_code})')
        continue
      print(f'{"component":<32}{"seconds":>9}{"peak MiB":>10}')
      for component, seconds, peak in component_figures(workdir, samples):
        print(f'{component:<32}{seconds:>9.1f}{peak:>10.0f}')
      peak_all = max(rss for _, rss in samples) / 2**20
      print(f'{"whole run (with start-up)":<32}{wall:>9.1f}{peak_all:>10.0f}', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
