"""make bench-quality: top-k accuracy of the pipeline's model beside baselines, same split.

Protocol (the TFRS tutorials'): random 80/20 split of the ratings, top-k accuracy over the
whole catalogue (the movies rated in training), reported twice: with the user's training movies
ranked too (the tutorials' figure) and with them excluded (what a product shows). Baselines,
computed here on the same split: most-popular (training rating counts) and EASE (closed-form
item-item model, Steck 2019). The model is scored through its plain-TF evaluation SavedModel
(Format-TFMA), which scores every movie, so seen movies can be removed before ranking.
Runs on real ml-100k with DATA_DIR=<folder>; without it, on synthetic data (and says so).
"""
import argparse
import glob
import os
import sys
import time
from typing import Dict

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import features as f
from pipeline import cli
from pipeline.baselines import Ratings, baseline_accuracy, ratings_of_split, top_k_accuracy
from pipeline.results import latest_run_results

TOP_KS = (10, 50, 100)


def model_accuracy(model_uri: str, transform_uri: str, examples_uri: str, train: Ratings,
                   batch_size: int = 1024) -> Dict[str, float]:
  """The trained model's hit rates on the eval split, seen movies included and excluded."""
  scorer = tf.saved_model.load(os.path.join(model_uri, 'Format-TFMA')).signatures[
      f.EVAL_SIGNATURE]
  vocabulary = tft.TFTransformOutput(transform_uri).vocabulary_by_name(f.MOVIE_ID_VOCAB)
  movie_index = {movie: index for index, movie in enumerate(vocabulary)}
  seen: Dict[bytes, list] = {}
  for user, movie in zip(train.user_ids, train.movie_ids):
    seen.setdefault(user, []).append(movie_index[movie])
  files = glob.glob(os.path.join(examples_uri, 'Split-eval', '*'))
  spec = {name: tf.io.FixedLenFeature([], tf.string) for name in (f.USER_ID, f.MOVIE_ID)}

  def batches():
    for serialized in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(batch_size):
      ids = tf.io.parse_example(serialized, spec)
      labels = np.array([movie_index.get(movie, -1) for movie in ids[f.MOVIE_ID].numpy()])
      yield (scorer(examples=serialized)[f.EVAL_SCORES].numpy(), labels,
             ids[f.USER_ID].numpy().tolist())

  return top_k_accuracy(batches(), {user: np.array(v) for user, v in seen.items()}, TOP_KS)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.quality', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_run_arguments(parser)
  parser.add_argument('--ease-l2', type=float, default=500.0,
                      help='L2 regularisation of the EASE baseline')
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
  train = ratings_of_split(examples_uri, 'train')
  eval_ratings = ratings_of_split(examples_uri, 'eval')
  rows = baseline_accuracy(train, eval_ratings, ease_l2=args.ease_l2)
  rows[args.model] = model_accuracy(results.model_uri,
                                    results.outputs[('Transform', 'TransformGraph')],
                                    examples_uri, train)

  print(f'\n== Quality: {len(train.movie_ids)} train / {len(eval_ratings.movie_ids)} eval '
        f'ratings, {len(set(train.movie_ids))} movies in training; EASE l2={args.ease_l2} ==')
  print(f'{"":<16}{"seen movies ranked too":^30}{"seen movies excluded":^30}')
  print(f'{"model":<16}' + ''.join(f'{f"top-{k}":>10}' for k in TOP_KS) * 2)
  for name, metrics in rows.items():
    print(f'{name:<16}' + ''.join(f'{metrics[f"top_{k}_accuracy"]:>10.4f}' for k in TOP_KS)
          + ''.join(f'{metrics[f"top_{k}_accuracy_unseen"]:>10.4f}' for k in TOP_KS))
  evaluator = ', '.join(f'top-{k} {results.metrics[f"top_{k}_accuracy"]:.4f}' for k in TOP_KS)
  print(f'(the Evaluator\'s figures for {args.model}, seen movies ranked too: {evaluator})')
  print('\n== Wall time per component (seconds) ==')
  for component, seconds in results.component_seconds:
    print(f'{component:<32}{seconds:>8.1f}')
  print(f'{"whole run":<32}{wall_seconds:>8.1f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
