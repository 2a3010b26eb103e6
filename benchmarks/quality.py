"""make bench-quality: top-k accuracy of the pipeline's model beside a most-popular baseline.

Protocol (the TFRS tutorials'): random 80/20 split of the ratings, top-k accuracy over the
whole catalogue, movies the user rated in training not excluded. The baseline ranks movies by
their training-split rating count and is scored on the same eval split in the same run.
Runs on real ml-100k with DATA_DIR=<folder>; without it, on synthetic data (and says so).
"""
import argparse
import os
import sys
import time

from pipeline import cli
from pipeline.baselines import most_popular_accuracy, movie_ids_of_split
from pipeline.results import latest_run_results

TOP_KS = (10, 50, 100)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.quality', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_run_arguments(parser)
  parser.set_defaults(workdir=os.path.join('workdir', 'bench-quality'), min_accuracy=0.0,
                      no_cache=True)
  args = parser.parse_args(argv)
  if args.data_dir:
    args.dataset = 'ml-100k'
    print(f'Benchmark on real data from {args.data_dir}')
  else:
    print('DATA_DIR not given: benchmarking on SYNTHETIC data. For the real figures run\n'
          '  make bench-quality DATA_DIR=/path/to/ml-100k')
  args.split = 'random'
  started = time.time()
  exit_code = cli.run(args)
  if exit_code not in (0, cli.EXIT_NOT_BLESSED):
    return exit_code
  wall_seconds = time.time() - started
  results = latest_run_results(os.path.join(os.path.abspath(args.workdir), 'metadata.sqlite'))
  examples_uri = results.outputs[('FileBasedExampleGen', 'Examples')]
  train_ids = movie_ids_of_split(examples_uri, 'train')
  eval_ids = movie_ids_of_split(examples_uri, 'eval')
  baseline = most_popular_accuracy(train_ids, eval_ids)

  print(f'\n== Quality: {len(train_ids)} train / {len(eval_ids)} eval ratings, '
        f'{len(set(train_ids))} movies in training ==')
  print(f'{"model":<16}' + ''.join(f'{f"top-{k}":>10}' for k in TOP_KS))
  for name, metrics in (('retrieval', results.metrics), ('most-popular', baseline)):
    print(f'{name:<16}' + ''.join(f'{metrics[f"top_{k}_accuracy"]:>10.4f}' for k in TOP_KS))
  print('\n== Wall time per component (seconds) ==')
  for component, seconds in results.component_seconds:
    print(f'{component:<32}{seconds:>8.1f}')
  print(f'{"whole run":<32}{wall_seconds:>8.1f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
