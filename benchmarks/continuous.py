"""make bench-continuous: the pipeline run week by week as data arrives, warm against cold.

The data is replayed as spans (`python -m pipeline replay`, pipeline/replay.py): span 1 holds
the ratings before --from (default: the first 80% of them in time), each later span
--span-days (7) of ratings. Two replays run the pipeline once per span into workdirs of their
own, with the same arguments but one:
- warm: --warm-start: each run starts from the live model (the previous run's, by id) for
  --warm-start-epochs;
- cold: every run trains from scratch.
The gate is opened (--min-accuracy 0 --max-regression 1) so every week's model is pushed and
served the next week; the drift check warns. Each run exports --top-k 100 + the longest
history, as bench-replay does, so the history can be filtered out of a top 100.

Then each week after a run is replayed with the requests a live service would have got
(benchmarks/replay.py: user id, time, the history so far; seen movies excluded), against:
(a) warm: the model the warm replay pushed by the end of the week before; (b) cold: the same
of the cold replay; (c) frozen: the first model, never retrained; (d) EASE fit on every rating
before the week; (e) most-popular over the 7 days before each request.
Reported per week: HR@10 and HR@100 of each, and the wall time of each week's run (whole
pipeline, and the Trainer + Refit); then the means, and the warm run's time as a share of the
cold one's. A plot of HR@10 per week. Everything under --workdir.
"""
import argparse
import json
import os
import pathlib
import sys
from typing import List, Optional

import components  # noqa: F401  (process set-up before TensorFlow loads)
import numpy as np
from benchmarks import replay as protocol
from components.ingest import movielens
from pipeline import replay as span_replay
from serving import saved_model

VARIANTS = {'warm': ('--warm-start',), 'cold': ()}
POPULAR_DAYS = 7


def _replay_spans(variant: str, data_dir: str, workdir: pathlib.Path, top_k: int,
                  args: argparse.Namespace) -> dict:
  """Runs `pipeline replay` for one variant; returns its runs.json."""
  argv = ['replay', '--data-dir', data_dir, '--workdir', str(workdir),
          '--span-days', str(args.span_days), '--top-k', str(top_k), '--min-accuracy', '0',
          '--max-regression', '1', '--drift-action', 'warn', *VARIANTS[variant],
          *(['--from', args.start] if args.start else []),
          *(['--until', args.until] if args.until else []), *args.pipeline_arg]
  seconds = protocol.run_pipeline_command(argv, f'the {variant} replay', workdir)
  print(f'{variant}: replayed in {seconds:.0f} s')
  with open(workdir / 'replay' / 'runs.json') as runs:
    return json.load(runs)


def _served_versions(workdir: pathlib.Path, runs: List[dict]) -> List[pathlib.Path]:
  """The version serving after each run: the latest pushed by then (a run that pushed
  nothing leaves the one before)."""
  base, served, current = protocol.pushed_model_base(workdir), [], None
  for run in runs:
    current = base / run['pushed_version'] if run['pushed_version'] else current
    served.append(current)
  return served


def _trainer_seconds(run: dict) -> float:
  seconds = run.get('component_seconds', {})
  return seconds.get('Trainer', 0.0) + seconds.get('Refit', 0.0)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.continuous', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-dir', help='a MovieLens folder (ml-100k, ml-1m or CSV format); '
                      'without it, synthetic data')
  parser.add_argument('--span-days', type=float, default=7, help='days per span (default: 7)')
  parser.add_argument('--from', dest='start', metavar='YYYY-MM-DD',
                      help='span 1 holds the ratings before this day (default: the first 80%%)')
  parser.add_argument('--until', metavar='YYYY-MM-DD', help='leave out ratings from this day')
  parser.add_argument('--pipeline-arg', action='append', default=[], metavar='ARG',
                      help='an argument for every pipeline run, e.g. --pipeline-arg=--epochs=5 '
                      '(repeatable)')
  protocol.add_scoring_arguments(parser)
  parser.add_argument('--workdir', default=os.path.join('workdir', 'bench-continuous'),
                      help='the replays\' workdirs and the results (default: '
                      'workdir/bench-continuous)')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  workdir = pathlib.Path(args.workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  if args.data_dir:
    data_dir = pathlib.Path(args.data_dir).resolve()
    fmt = movielens.detect_format(data_dir)
    print(f'Continuous retraining on real data ({fmt}) from {data_dir}')
  else:
    from pipeline import datasets
    data_dir, fmt = datasets.resolve_data_dir('synthetic', str(workdir)), 'synthetic'
    print('DATA_DIR not given: SYNTHETIC data. For the real figures run\n'
          '  make bench-continuous DATA_DIR=/path/to/ml-100k')
  ratings = [rating for _, rating in movielens.iter_every_rating(data_dir)]
  longest_history = int(np.max(np.unique([r.user_id for r in ratings],
                                         return_counts=True)[1]))
  top_k = max(protocol.KS) + longest_history

  recorded = {variant: _replay_spans(variant, str(data_dir), workdir / variant, top_k, args)
              for variant in VARIANTS}
  bounds = recorded['cold']['cut']['boundaries']
  runs = {variant: result['runs'] for variant, result in recorded.items()}
  served = {variant: _served_versions(workdir / variant, runs[variant]) for variant in VARIANTS}
  frozen = served['cold'][0]

  weeks = []
  # The model of run j (span j) serves span j + 1: the ratings in [bounds[j - 1], bounds[j]).
  for j in range(1, len(runs['cold'])):
    week = protocol.make_replay([r for r in ratings if r.timestamp < bounds[j]], bounds[j - 1])
    print(f'\n== Week from {span_replay.date_of(bounds[j - 1])}: {len(week):,} requests, '
          f'served by the models of span {j} ==')
    rankers = {
        'warm': protocol.ServedModel('warm', saved_model.load(str(served['warm'][j - 1]))),
        'cold': protocol.ServedModel('cold', saved_model.load(str(served['cold'][j - 1]))),
        'frozen': protocol.ServedModel('frozen', saved_model.load(str(frozen))),
        'EASE': protocol.ease_baseline(week, args.ease_l2),
        'most-popular, last week': protocol.popularity_baseline(
            'most-popular, last week', week, POPULAR_DAYS * protocol.DAY_SECONDS)}
    figures = {name: protocol.metrics(protocol.replay_ranker(ranker, week, args.batch_size))
               for name, ranker in rankers.items()}
    weeks.append({'from': span_replay.date_of(bounds[j - 1]), 'requests': len(week),
                  'figures': figures,
                  'seconds': {variant: runs[variant][j]['seconds'] for variant in VARIANTS},
                  'trainer_seconds': {variant: _trainer_seconds(runs[variant][j])
                                      for variant in VARIANTS}})

  names = list(weeks[0]['figures']) if weeks else []
  print(f'\n== Continuous retraining: {fmt}, {len(runs["cold"])} spans, week by week; each '
        'week answered by the models of the week before; HR@10 / HR@100, history excluded ==')
  print(f'{"week from":<11}{"requests":>9}' + ''.join(f'{name:>26}' for name in names)
        + f'{"its run s, warm / cold":>24}{"training s":>18}')
  for week in weeks:
    print(f'{week["from"]:<11}{week["requests"]:>9,}' + ''.join(
        f'{week["figures"][name]["hr_10"]:>17.4f} / {week["figures"][name]["hr_100"]:.4f}'
        for name in names)
          + f'{week["seconds"]["warm"]:>16.0f} / {week["seconds"]["cold"]:<5.0f}'
          + f'{week["trainer_seconds"]["warm"]:>10.0f} / {week["trainer_seconds"]["cold"]:<5.0f}')
  means = {name: {metric: float(np.mean([week['figures'][name][metric] for week in weeks]))
                  for metric in ('hr_10', 'hr_100')} for name in names}
  later = {variant: [run['seconds'] for run in runs[variant][1:]] for variant in VARIANTS}
  later_train = {variant: [_trainer_seconds(run) for run in runs[variant][1:]]
                 for variant in VARIANTS}
  summary = {
      'mean_over_weeks': means,
      'mean_run_seconds': {variant: float(np.mean(later[variant])) for variant in VARIANTS},
      'mean_trainer_seconds': {variant: float(np.mean(later_train[variant]))
                               for variant in VARIANTS}}
  summary['warm_share_of_cold_run'] = (summary['mean_run_seconds']['warm']
                                       / summary['mean_run_seconds']['cold'])
  summary['warm_share_of_cold_training'] = (summary['mean_trainer_seconds']['warm']
                                            / summary['mean_trainer_seconds']['cold'])
  print(f'{"mean":<20}' + ''.join(
      f'{means[name]["hr_10"]:>17.4f} / {means[name]["hr_100"]:.4f}' for name in names))
  print(f'Runs after the first: warm {summary["mean_run_seconds"]["warm"]:.0f} s, cold '
        f'{summary["mean_run_seconds"]["cold"]:.0f} s a run (warm/cold '
        f'{summary["warm_share_of_cold_run"]:.2f}); Trainer + Refit warm '
        f'{summary["mean_trainer_seconds"]["warm"]:.0f} s, cold '
        f'{summary["mean_trainer_seconds"]["cold"]:.0f} s '
        f'({summary["warm_share_of_cold_training"]:.2f})')
  path = workdir / 'continuous.json'
  with open(path, 'w') as out:
    json.dump({'dataset': fmt, 'argv': list(sys.argv[1:] if argv is None else argv),
               'boundaries': bounds, 'weeks': weeks, 'summary': summary, 'runs': runs},
              out, indent=1)
  print(f'\nEvery figure: {path}')
  from benchmarks import plot
  import matplotlib.pyplot as plt
  plt.close(plot.plot_continuous(str(path), str(workdir / 'continuous_hr_10.png')))
  return 0


if __name__ == '__main__':
  sys.exit(main())
