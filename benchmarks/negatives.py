"""Where the full softmax stops paying: a training step's time with catalogue negatives (every
movie scored, the candidate tower run over the whole catalogue at each step) against in-batch
negatives with the logQ correction, by catalogue size.

    python -m benchmarks.negatives [--sizes 1000,4000,16000,64000] [--batch-size 1024]

Uses the model's own RecommenderModel and CandidateTower (title tokens and genres as in
MovieLens: 3 tokens and 2 genres a movie) and a user-embedding query tower, on random ids. The
step time does not depend on what the ids mean, so synthetic ids measure it; what each choice
does to quality is in docs/benchmarks.md (catalogue negatives won on ml-100k and ml-1m).
components/model/config.py NEGATIVES_AUTO_MAX_CATALOGUE comes from this measurement.
"""
import argparse
import sys
import time

import components  # noqa: F401  (process set-up before TensorFlow loads)
import numpy as np
import tensorflow as tf

from components import features as f
from components.model.config import ModelConfig
from components.model.recommender import CatalogueNegatives, RecommenderModel
from components.model.towers import CandidateTower, dense_stack, embedding

NUM_USERS = 10_000
TITLE_TOKENS_PER_MOVIE, GENRES_PER_MOVIE, NUM_TOKENS, NUM_GENRES = 3, 2, 20_000, 20


def _ragged(rng, rows, per_row, vocab):
  return tf.RaggedTensor.from_row_lengths(
      rng.integers(0, vocab, rows * per_row), np.full(rows, per_row))


def _candidate_features(rng, movie_ids):
  return {f.MOVIE_ID_INDEX: tf.constant(movie_ids),
          f.MOVIE_TITLE_TOKEN_INDICES: _ragged(rng, len(movie_ids), TITLE_TOKENS_PER_MOVIE,
                                               NUM_TOKENS),
          f.MOVIE_GENRE_INDICES: _ragged(rng, len(movie_ids), GENRES_PER_MOVIE, NUM_GENRES)}


class _UserTower(tf.keras.Model):
  def __init__(self, config):
    super().__init__()
    self.users = embedding(NUM_USERS, config, 'user_embedding')
    self.dense = dense_stack(config.layer_sizes, name='query_dense')

  def call(self, features, training=False):
    return self.dense(self.users(features[f.USER_ID_INDEX]))


def step_seconds(num_movies: int, negatives: str, batch_size: int, steps: int,
                 seed: int = 0) -> float:
  """The median seconds of a training step (after the first, which traces)."""
  rng = np.random.default_rng(seed)
  config = ModelConfig(kind='retrieval', negatives=negatives)
  catalogue = _candidate_features(rng, np.arange(num_movies))
  candidate_tower = CandidateTower(num_movies, NUM_TOKENS, NUM_GENRES, config)
  model = RecommenderModel(
      _UserTower(config), candidate_tower,
      movie_sampling_probability=tf.fill([num_movies + 1], 1.0 / num_movies)
      if negatives == 'in-batch' else None,
      catalogue_negatives=CatalogueNegatives(catalogue, tf.range(num_movies + 1, dtype=tf.int64))
      if negatives == 'catalogue' else None)
  model.compile(optimizer=tf.keras.optimizers.Adagrad(0.05))
  batch = {**_candidate_features(rng, rng.integers(0, num_movies, batch_size)),
           f.USER_ID_INDEX: tf.constant(rng.integers(0, NUM_USERS, batch_size))}
  train_step = tf.function(model.train_step)
  times = []
  for _ in range(steps + 1):
    started = time.perf_counter()
    train_step(batch)
    times.append(time.perf_counter() - started)
  return float(np.median(times[1:]))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.negatives', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', default='1000,4000,16000,64000',
                      help='catalogue sizes (default: %(default)s)')
  parser.add_argument('--batch-size', type=int, default=1024)
  parser.add_argument('--steps', type=int, default=10)
  args = parser.parse_args(argv)
  print(f'{"movies":>8}{"catalogue ms/step":>19}{"in-batch ms/step":>18}{"ratio":>7}')
  for size in (int(text) for text in args.sizes.split(',')):
    full = step_seconds(size, 'catalogue', args.batch_size, args.steps)
    in_batch = step_seconds(size, 'in-batch', args.batch_size, args.steps)
    print(f'{size:>8,}{full * 1e3:>19.1f}{in_batch * 1e3:>18.1f}{full / in_batch:>7.1f}',
          flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
