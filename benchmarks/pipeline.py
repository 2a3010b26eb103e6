"""make bench-pipeline: each component's wall time, peak memory and throughput, by data size and
Beam mode, against the scale targets.

Data: synthetic CSV-format data in ml-25m's shape (62,423 movies, about 154 ratings a user) at
--sizes (1M, 3M and 10M ratings by default), and DATA_DIR when given (e.g. a real
ml-latest-small folder). Each dataset runs once per Beam preset (--presets) in a child process
(`pipeline run --no-cache`), while the resident memory of the child and all its Beam workers is
sampled every 0.2 s; a component's peak is the largest sample inside its execution window
(from MLMD), its throughput the dataset's ratings over its seconds. --stop-after
FileBasedExampleGen (or another component) measures the stages up to it alone.
--trainer-workers 2 also times the Trainer on the smallest dataset's Transform output in one
process and on 2 local MultiWorkerMirrored workers (benchmarks/distributed_trainer.py).

The targets (issue "Scale out", 2 cores): ExampleGen >= 25,000 ratings/s at 10M; peak memory
<= 8 GiB at 10M; every stage at most linear from the smallest size to the largest; 10M
ratings end to end <= 90 minutes with --ensemble-size 1. The summary says which are met.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

import psutil

from components.ingest import movielens, synthetic
from pipeline.results import latest_run_results

# ml-25m: 162,541 users, 62,423 movies, 25,000,095 ratings.
ML25M_MOVIES = 62_423
ML25M_RATINGS_PER_USER = 25_000_095 / 162_541

EXAMPLE_GEN = 'FileBasedExampleGen'
TARGET_EXAMPLE_GEN_RATINGS_PER_S = 25_000
TARGET_PEAK_GIB = 8.0
TARGET_END_TO_END_MINUTES = 90
# A stage "grows at most linearly" if its time grows by at most this much more than the
# ratings (start-up costs make small runs look slow per rating, never the other way).
LINEAR_SLACK = 1.15


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


class Figure(NamedTuple):
  component: str
  seconds: float
  peak_mib: float


def component_figures(workdir: str, samples) -> List[Figure]:
  """Each component's seconds and peak MiB, from MLMD's execution windows and the samples."""
  results = latest_run_results(os.path.join(workdir, 'metadata.sqlite'))
  figures = []
  for component, seconds, start, end in results.component_windows:
    inside = [rss for when, rss in samples if start <= when <= end]
    figures.append(Figure(component, seconds, max(inside, default=0) / 2**20))
  return figures


def parse_size(text: str) -> int:
  """'1M' -> 1,000,000; '300k' -> 300,000; '2500' -> 2,500."""
  units = {'k': 1_000, 'm': 1_000_000}
  text = text.strip().lower()
  if text[-1:] in units:
    return int(float(text[:-1]) * units[text[-1]])
  return int(text)


def ml25m_shaped(folder: str, num_ratings: int) -> str:
  """Synthetic CSV data of ml-25m's shape with num_ratings ratings (written once per size)."""
  path = os.path.join(folder, f'ml25m-shape-{num_ratings}')
  if not os.path.isfile(os.path.join(path, 'ratings.csv')):
    started = time.time()
    synthetic.generate(path, fmt='csv', num_ratings=num_ratings, num_movies=ML25M_MOVIES,
                       num_users=max(1, round(num_ratings / ML25M_RATINGS_PER_USER)))
    print(f'wrote {path} in {time.time() - started:.0f}s', flush=True)
  return path


def count_ratings(data_dir: str) -> int:
  return sum(1 for _ in movielens.iter_every_rating(data_dir))


class Run(NamedTuple):
  dataset: str
  ratings: int
  preset: str
  figures: List[Figure]
  wall: float
  peak_mib: float


def run_one(name: str, data_dir: str, ratings: int, preset: str, workdir: str,
            args: argparse.Namespace) -> Optional[Run]:
  command = [sys.executable, '-m', 'pipeline', 'run', '--data-dir', data_dir,
             '--workdir', workdir, '--no-cache', '--min-accuracy', '0',
             '--ensemble-size', str(args.ensemble_size), '--beam-preset', preset,
             *(['--epochs', str(args.epochs)] if args.epochs else []),
             *(['--stop-after', args.stop_after] if args.stop_after else []),
             *args.pipeline_arg]
  print(f'\n== {name} ({ratings:,} ratings), Beam preset {preset} ==', flush=True)
  exit_code, samples, wall = run_and_sample(command)
  if exit_code not in (0, 3):
    print(f'run failed (exit {exit_code})')
    return None
  figures = component_figures(workdir, samples)
  print(f'{"component":<28}{"seconds":>9}{"peak MiB":>10}{"ratings/s":>11}')
  for figure in figures:  # throughput of the stages that take a second or more
    rate = f'{ratings / figure.seconds:,.0f}' if figure.seconds >= 1 else '-'
    print(f'{figure.component:<28}{figure.seconds:>9.1f}{figure.peak_mib:>10.0f}{rate:>11}')
  peak = max((rss for _, rss in samples), default=0) / 2**20
  print(f'{"whole run (with start-up)":<28}{wall:>9.1f}{peak:>10.0f}', flush=True)
  return Run(name, ratings, preset, figures, wall, peak)


def summary(runs: List[Run]) -> List[str]:
  """The targets, per preset, on the synthetic sizes."""
  lines = []
  for preset in sorted({run.preset for run in runs}):
    sized = sorted((run for run in runs if run.preset == preset
                    and run.dataset.startswith('ml25m-shape')), key=lambda run: run.ratings)
    if not sized:
      continue
    small, large = sized[0], sized[-1]
    seconds = {figure.component: figure.seconds for figure in large.figures}
    if EXAMPLE_GEN in seconds:
      rate = large.ratings / seconds[EXAMPLE_GEN]
      lines.append(f'{preset}: ExampleGen {rate:,.0f} ratings/s at {large.ratings:,} '
                   f'(target >= {TARGET_EXAMPLE_GEN_RATINGS_PER_S:,}: '
                   f'{_met(rate >= TARGET_EXAMPLE_GEN_RATINGS_PER_S)})')
    lines.append(f'{preset}: peak memory {large.peak_mib / 1024:.1f} GiB at '
                 f'{large.ratings:,} (target <= {TARGET_PEAK_GIB:g}: '
                 f'{_met(large.peak_mib / 1024 <= TARGET_PEAK_GIB)})')
    if large.ratings > small.ratings:
      growth = large.ratings / small.ratings
      small_seconds = {figure.component: figure.seconds for figure in small.figures}
      for component, large_s in seconds.items():
        if small_seconds.get(component, 0) >= 1:  # stages of a second or more
          ratio = large_s / small_seconds[component]
          lines.append(f'{preset}: {component} x{ratio:.1f} for x{growth:.1f} the ratings '
                       f'({_met(ratio <= growth * LINEAR_SLACK)} at most linear)')
    partial = EXAMPLE_GEN in seconds and len(seconds) == 1
    minutes = large.wall / 60
    verdict = 'a partial run' if partial else _met(minutes <= TARGET_END_TO_END_MINUTES)
    lines.append(f'{preset}: {large.ratings:,} ratings end to end {minutes:.1f} min '
                 f'(target <= {TARGET_END_TO_END_MINUTES} with --ensemble-size 1: {verdict})')
  return lines


def _model_kind(pipeline_args: List[str]) -> str:
  """The model kind the runs train: --model=KIND among the pipeline args, else the default."""
  from components.model import kinds
  given = [arg.split('=', 1)[1] for arg in pipeline_args if arg.startswith('--model=')]
  return given[-1] if given else kinds.DEFAULT


def _met(ok: bool) -> str:
  return 'met' if ok else 'NOT met'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.pipeline', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-dir', help='a real MovieLens folder to run too (any format, '
                      'e.g. ml-latest-small)')
  parser.add_argument('--sizes', default='1M,3M,10M',
                      help='synthetic ml-25m-shaped datasets, in ratings (default: %(default)s;'
                      ' empty: none)')
  parser.add_argument('--presets', default='in-memory,multi-processing',
                      help='Beam presets to compare (comma-separated; default: %(default)s)')
  parser.add_argument('--stop-after', metavar='COMPONENT',
                      help=f'run the components up to this one only (e.g. {EXAMPLE_GEN})')
  parser.add_argument('--epochs', type=int, help="the Trainer's epochs (default: the model's)")
  parser.add_argument('--ensemble-size', type=int, default=1,
                      help='models the Trainer trains (default: %(default)s, as the targets)')
  parser.add_argument('--trainer-workers', type=int, default=0, metavar='N',
                      help='also time the Trainer on the smallest dataset in one process and '
                      'on N local MultiWorkerMirrored workers (0: no)')
  parser.add_argument('--data-cache', default=os.path.join(tempfile.gettempdir(),
                                                           'bench-pipeline-data'),
                      help='where the synthetic datasets are written once (default: %(default)s)')
  parser.add_argument('--pipeline-arg', action='append', default=[], metavar='ARG',
                      help='an argument for every `pipeline run`, e.g. '
                      '--pipeline-arg=--model=retrieval (repeatable)')
  args = parser.parse_args(argv)

  print(f'machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB')
  datasets: Dict[str, Tuple[str, int]] = {}
  if args.data_dir:
    datasets[os.path.basename(os.path.normpath(args.data_dir))] = (
        args.data_dir, count_ratings(args.data_dir))
  for size in filter(None, args.sizes.split(',')):
    ratings = parse_size(size)
    datasets[f'ml25m-shape-{size}'] = (ml25m_shaped(args.data_cache, ratings), ratings)

  scratch = tempfile.mkdtemp(prefix='bench-pipeline-')
  runs = []
  for name, (data_dir, ratings) in datasets.items():
    for preset in args.presets.split(','):
      run = run_one(name, data_dir, ratings, preset, f'{scratch}/{name}-{preset}', args)
      if run:
        runs.append(run)
  print('\n== Targets ==')
  for line in summary(runs):
    print(line)
  if args.trainer_workers and runs and not args.stop_after:
    from benchmarks import distributed_trainer
    smallest = min(runs, key=lambda run: run.ratings)
    workdir = f'{scratch}/{smallest.dataset}-{smallest.preset}'
    print(f'\n== Trainer on {smallest.dataset}: one process vs {args.trainer_workers} local '
          'workers ==')
    distributed_trainer.print_rows(distributed_trainer.compare(
        workdir, f'{scratch}/trainers', workers=args.trainer_workers,
        kind=_model_kind(args.pipeline_arg)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
