"""make bench-quality: top-k accuracy of the pipeline's model beside baselines, same split.

Protocols (--split; the default depends on the model kind):
- rating kinds (retrieval, multitask), default random: the TFRS tutorials' protocol, a random
  80/20 split of the ratings (--split time: the latest ratings are the eval split); "seen" is
  the user's training ratings.
- timeline kinds (sequential), default last: leave-last-out (the SASRec/BERT4Rec protocol),
  each user's last movie held out, ranked against the whole catalogue with the user's history
  excluded: every movie of the user's training examples (their labels and contexts), not just
  the example's context window. HR@10 is top-10 accuracy "seen movies excluded" (one label per
  user), beside NDCG@10. --split random: the TFRS sequential tutorial's hash split of the
  timeline examples (context -> next movie, 90/10); --split time: every eval rating as the next
  movie after the history so far; for both, "seen" is the example's context.
Top-k accuracy (and NDCG@10) is over the whole catalogue (the movies seen in training),
reported twice: with the movies the query has already seen ranked too (the tutorials' figure)
and excluded (what a product shows).
Baselines, computed here on the same split (pipeline/baselines.py): most-popular and EASE for
retrieval and multitask; most-popular and first-order Markov for sequential, and for
leave-last-out EASE too, fitted on the training timelines (user x movie: each user's labels and
context movies) and scored from each user's whole history; a bias model's rating RMSE for
multitask. The model is scored through its plain-TF evaluation SavedModel (Format-TFMA), which
scores every movie, so seen movies can be removed before ranking.
Writes every figure (top-k for k = 1..100, NDCG@10) to a JSON file for benchmarks/plot.py.
Runs on real data with DATA_DIR=<folder> (ml-100k, ml-1m or CSV format); without it, on synthetic
data (and says so).
"""
import argparse
import json
import os
import sys
import time
from typing import Dict

import components  # noqa: F401  (process set-up before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from components import features as f
from components.eval_config import RMSE_METRIC
from components.ingest import movielens
from components.model import kinds
from pipeline import baselines, cli
from pipeline.results import latest_run_results

TOP_KS = (10, 50, 100)
CURVE_KS = tuple(range(1, 101))
NDCG_K = 10
# The --split each kind of model is benchmarked on unless told: the tutorials' random split for
# rating kinds, leave-last-out for next-movie (timeline) kinds.
DEFAULT_SPLITS = {False: 'random', True: 'last'}


def default_split(model: str) -> str:
  """The split bench-quality runs `model` on when --split is not given."""
  return DEFAULT_SPLITS[kinds.of(model).timelines]


def protocol(timelines: bool, split: str) -> str:
  """One line on what the eval split is and what "seen" means, for the printout."""
  if not timelines:
    held_out = {'random': 'a random share of the ratings',
                'time': 'the latest ratings'}[split]
    return f'{split} split ({held_out}); seen = the user\'s training ratings'
  return {'last': "leave-last-out (each user's last movie held out, full ranking); seen = the "
                  "user's whole history (every movie of their training examples)",
          'random': 'random split (a hash of the timeline examples); seen = the context',
          'time': 'time split (every future rating after the history so far); seen = the '
                  'context'}[split]


def model_accuracy(model_uri: str, transform_uri: str, examples_uri: str,
                   train: baselines.Ratings, eval_ratings: baselines.Ratings,
                   ks=CURVE_KS, whole_history: bool = False) -> Dict[str, float]:
  """The trained model's hit rates (and NDCG) on the eval split, seen movies included and
  excluded, with the baselines' labels and seen movies (in the model's movie vocabulary;
  whole_history: see baselines.seen_rows)."""
  scorer = tf.saved_model.load(os.path.join(model_uri, 'Format-TFMA')).signatures[
      f.SCORE_SIGNATURE]
  vocabulary = tft.TFTransformOutput(transform_uri).vocabulary_by_name(f.MOVIE_ID_VOCAB)
  movie_index = {movie: index for index, movie in enumerate(vocabulary)}
  # The same files in the same order as eval_ratings (baselines.ratings_of_split).
  serialized = np.array(list(tf.data.TFRecordDataset(
      baselines.split_files(examples_uri, 'eval'), compression_type='GZIP').as_numpy_iterator()),
      dtype=object)  # not numpy's fixed-width bytes: those drop a record's trailing zero bytes

  def score(rows):
    return scorer(examples=tf.constant(serialized[rows]))[f.SCORE_OUTPUT].numpy()

  return baselines.accuracies(
      {'model': score}, baselines.movie_indices(eval_ratings.movie_ids, movie_index),
      baselines.seen_rows(eval_ratings, train, movie_index, whole_history), ks,
      batch_size=1024, ndcg_ks=(NDCG_K,))['model']


def _row(metrics: Dict[str, float], suffix: str) -> str:
  return (''.join(f'{metrics[f"top_{k}_accuracy{suffix}"]:>10.4f}' for k in TOP_KS)
          + f'{metrics[f"ndcg_{NDCG_K}{suffix}"]:>10.4f}')


def parse_args(argv=None) -> argparse.Namespace:
  """The pipeline's run flags and this benchmark's; --split, when not given, by the model's kind
  (default_split)."""
  parser = argparse.ArgumentParser(prog='python -m benchmarks.quality', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_run_arguments(parser, per_kind_defaults={
      kind: {'split': default_split(kind)} for kind in kinds.KINDS})
  parser.add_argument('--ease-l2', type=float, default=500.0,
                      help='L2 regularisation of the EASE baseline')
  parser.add_argument('--results-json', help='where to write every figure (default: '
                      '<workdir>/quality-<model>.json)')
  # refit off: the figures are the gated Trainer's model's, on the eval split it never saw.
  # Drift check off: one workdir serves every dataset measured, which is no drift to stop on.
  parser.set_defaults(workdir=os.path.join('workdir', 'bench-quality'), min_accuracy=0.0,
                      max_rmse=10.0, no_cache=True, refit=False, drift_action='off')
  args = parser.parse_args(argv)
  if args.split is None:
    args.split = default_split(args.model)
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.data_dir:
    args.dataset = movielens.detect_format(args.data_dir)
    print(f'Benchmark on real data ({args.dataset}) from {args.data_dir}')
  else:
    print('DATA_DIR not given: benchmarking on SYNTHETIC data. For the real figures run\n'
          '  make bench-quality DATA_DIR=/path/to/ml-100k')
  started = time.time()
  exit_code = cli.run(args)
  if exit_code not in (0, cli.EXIT_NOT_BLESSED):
    return exit_code
  wall_seconds = time.time() - started
  workdir = os.path.abspath(args.workdir)
  results = latest_run_results(os.path.join(workdir, 'metadata.sqlite'))
  kind = kinds.of(args.model)
  examples_uri = results.outputs[(kind.examples_component, 'Examples')]
  train = baselines.ratings_of_split(examples_uri, 'train')
  eval_ratings = baselines.ratings_of_split(examples_uri, 'eval')
  # Leave-last-out: every training example of a user is before their held-out movie, so their
  # whole training history is what they had seen (and what EASE scores from).
  whole_history = kind.timelines and args.split == 'last'
  with_ease = not kind.timelines or whole_history
  if kind.timelines:
    rows = baselines.sequential_baseline_accuracy(
        train, eval_ratings, CURVE_KS, ease_l2=args.ease_l2 if with_ease else None,
        whole_history=whole_history)
  else:
    rows = baselines.baseline_accuracy(train, eval_ratings, args.ease_l2, CURVE_KS)
  label = args.model + (' + timestamps' if args.use_timestamps else '')
  rows[label] = model_accuracy(results.model_uri,
                               results.outputs[('Transform', 'TransformGraph')],
                               examples_uri, train, eval_ratings, whole_history=whole_history)

  print(f'\n== Quality, {protocol(kind.timelines, args.split)} ==')
  print(f'{len(train.movie_ids)} train / {len(eval_ratings.movie_ids)} eval '
        f'{kind.example_unit}, {len(set(train.movie_ids))} movies in training'
        + (f'; EASE l2={args.ease_l2}' if with_ease else '')
        + ('; one held-out movie per user: HR@k = top-k accuracy' if whole_history else ''))
  print(f'{"":<22}{"seen movies ranked too":^40}{"seen movies excluded":^40}')
  print(f'{"model":<22}'
        + (''.join(f'{f"top-{k}":>10}' for k in TOP_KS) + f'{f"NDCG@{NDCG_K}":>10}') * 2)
  for name, metrics in rows.items():
    print(f'{name:<22}{_row(metrics, "")}{_row(metrics, "_unseen")}')
  evaluator = ', '.join(f'top-{k} {results.metrics[f"top_{k}_accuracy"]:.4f}' for k in TOP_KS)
  print(f'(the Evaluator\'s figures for {args.model}, seen movies ranked too: {evaluator})')
  rmse = {}
  if RMSE_METRIC in results.metrics:  # a kind that predicts ratings (multitask)
    rmse = {'bias baseline': baselines.bias_baseline_rmse(train, eval_ratings),
            args.model: results.metrics[RMSE_METRIC]}
    print('\n== Rating RMSE on the eval ratings ==')
    for name, value in rmse.items():
      print(f'{name:<16}{value:>10.4f}')
  print('\n== Wall time per component (seconds) ==')
  for component, seconds in results.component_seconds:
    print(f'{component:<32}{seconds:>8.1f}')
  print(f'{"whole run":<32}{wall_seconds:>8.1f}')

  path = args.results_json or os.path.join(workdir, f'quality-{args.model}.json')
  with open(path, 'w') as out:
    json.dump({'dataset': args.dataset, 'model': label, 'argv': list(argv or sys.argv[1:]),
               'split': args.split, 'protocol': protocol(kind.timelines, args.split),
               'top_k_accuracy': rows, 'rating_rmse': rmse}, out, indent=1)
  print(f'\nEvery figure (k = 1..100): {path}  (plot: python -m benchmarks.plot {path} ...)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
