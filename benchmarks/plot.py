"""Plots bench-quality's and bench-replay's result files.

  python -m benchmarks.plot workdir/bench-quality/quality-*.json -o docs/quality_top_k.png
  python -m benchmarks.plot workdir/bench-replay/replay.json -o docs/replay_hr_10.png

Quality: top-k accuracy against k for every model and baseline; one panel per result file (a
dataset and model's run), seen movies ranked too (solid) and excluded (dashed), so the curves
of one run share a split. Replay: HR@10 per week of requests for every model and baseline,
above the requests of each week.
"""
import argparse
import json
import sys
from typing import List, Optional

import matplotlib

matplotlib.use('Agg')  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def plot(result_files: List[str], output: str) -> plt.Figure:
  """Writes the PNG (2 panels per row) and returns the figure."""
  runs = []
  for path in result_files:
    with open(path) as result_file:
      runs.append(json.load(result_file))
  columns = min(len(runs), 2)
  rows = -(-len(runs) // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
  for axis in axes.flat[len(runs):]:
    axis.set_visible(False)
  for axis, run in zip(axes.flat, runs):
    for index, (name, metrics) in enumerate(run['top_k_accuracy'].items()):
      ks = sorted(int(key.split('_')[1]) for key in metrics
                  if key.startswith('top_') and key.endswith('_accuracy'))
      color = f'C{index}'
      axis.plot(ks, [metrics[f'top_{k}_accuracy'] for k in ks], color=color,
                label=f'{name}, seen ranked too')
      axis.plot(ks, [metrics[f'top_{k}_accuracy_unseen'] for k in ks], color=color,
                linestyle='--', label=f'{name}, seen excluded')
    axis.set_title(f'{run["dataset"]}: {run["model"]}')
    axis.set_xlabel('k')
    axis.set_ylabel('top-k accuracy (eval split)')
    axis.set_xlim(1, 100)
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc='upper left')
  figure.tight_layout()
  figure.savefig(output, dpi=110)
  print(f'Wrote {output}')
  return figure


def plot_replay(result_file: str, output: str) -> plt.Figure:
  """Writes the PNG of one bench-replay result file (HR@10 per week, requests per week) and
  returns the figure."""
  with open(result_file) as results:
    run = json.load(results)
  weeks = list(range(len(run['week_starts'])))
  figure, (hits, requests) = plt.subplots(
      2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={'height_ratios': [3, 1]})
  for index, (name, result) in enumerate(run['results'].items()):
    values = [float('nan') if value is None else value for value in result['weekly_hr_10']]
    hits.plot(weeks, values, marker='o', markersize=3, color=f'C{index}', label=name)
  hits.set_title(f'{run["dataset"]}: replay from {run["cut_date"]}, HR@10 per week '
                 '(history excluded)')
  hits.set_ylabel('HR@10')
  hits.set_ylim(bottom=0)
  hits.grid(alpha=0.3)
  hits.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1))  # clear of the lines
  requests.bar(weeks, run['week_requests'], color='grey')
  requests.set_ylabel('requests')
  requests.set_xlabel('week starting')
  step = max(1, len(weeks) // 12)
  requests.set_xticks(weeks[::step])
  requests.set_xticklabels(run['week_starts'][::step], rotation=30, fontsize=7)
  figure.tight_layout()
  figure.savefig(output, dpi=110, bbox_inches='tight')
  print(f'Wrote {output}')
  return figure


def plot_continuous(result_file: str, output: str) -> plt.Figure:
  """Writes the PNG of a bench-continuous result file (HR@10 per week of each model and
  baseline; each week's run time, warm and cold) and returns the figure."""
  with open(result_file) as results:
    run = json.load(results)
  weeks = run['weeks']
  x = list(range(len(weeks)))
  figure, (hits, seconds) = plt.subplots(
      2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={'height_ratios': [3, 1]})
  for index, name in enumerate(weeks[0]['figures'] if weeks else []):
    hits.plot(x, [week['figures'][name]['hr_10'] for week in weeks], marker='o', markersize=3,
              color=f'C{index}', label=name)
  hits.set_title(f'{run["dataset"]}: retrained week by week, HR@10 on the next week '
                 '(history excluded)')
  hits.set_ylabel('HR@10')
  hits.set_ylim(bottom=0)
  hits.grid(alpha=0.3)
  hits.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1))
  width = 0.4
  for offset, variant in ((-width / 2, 'warm'), (width / 2, 'cold')):
    seconds.bar([i + offset for i in x], [week['seconds'][variant] for week in weeks], width,
                label=f'{variant} run')
  seconds.set_ylabel('run seconds')
  seconds.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1))
  seconds.set_xticks(x)
  seconds.set_xticklabels([week['from'] for week in weeks], rotation=30, fontsize=7)
  seconds.set_xlabel('week from')
  figure.tight_layout()
  figure.savefig(output, dpi=110, bbox_inches='tight')
  print(f'Wrote {output}')
  return figure


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.plot', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('results', nargs='+', help='quality-<model>.json files of bench-quality, '
                      'or one replay.json of bench-replay')
  parser.add_argument('-o', '--output', default='docs/quality_top_k.png')
  args = parser.parse_args(argv)
  with open(args.results[0]) as first:
    replay = json.load(first).get('replay', False)
  if replay and len(args.results) > 1:
    parser.error('a replay result file is plotted alone')
  plt.close(plot_replay(args.results[0], args.output) if replay
            else plot(args.results, args.output))
  return 0


if __name__ == '__main__':
  sys.exit(main())
