"""Plots top-k accuracy against k for every model and baseline of bench-quality result files.

  python -m benchmarks.plot workdir/bench-quality/quality-*.json -o docs/quality_top_k.png

One panel per result file (a dataset and model's run), seen movies ranked too (solid) and
excluded (dashed), so the curves of one run share a split.
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


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.plot', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('results', nargs='+', help='quality-<model>.json files of bench-quality')
  parser.add_argument('-o', '--output', default='docs/quality_top_k.png')
  args = parser.parse_args(argv)
  plt.close(plot(args.results, args.output))
  return 0


if __name__ == '__main__':
  sys.exit(main())
