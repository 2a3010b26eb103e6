"""Non-learned baselines scored on the pipeline's own splits, to put model metrics in context."""
import collections
import glob
import os
from typing import Dict, List, Sequence

import tensorflow as tf

from components import features as f


def movie_ids_of_split(examples_uri: str, split: str) -> List[bytes]:
  """The movie id of every rating in one split of an ExampleGen output."""
  files = glob.glob(os.path.join(examples_uri, f'Split-{split}', '*'))
  if not files:
    raise FileNotFoundError(f'no files for split {split!r} under {examples_uri}')
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4096)
  spec = {f.MOVIE_ID: tf.io.FixedLenFeature([], tf.string)}
  ids = []
  for batch in dataset:
    ids.extend(tf.io.parse_example(batch, spec)[f.MOVIE_ID].numpy().tolist())
  return ids


def most_popular_accuracy(train_ids: Sequence[bytes], eval_ids: Sequence[bytes],
                          ks: Sequence[int] = (10, 50, 100)) -> Dict[str, float]:
  """Top-k accuracy of recommending everyone the k most rated training movies."""
  ranking = [movie for movie, _ in collections.Counter(train_ids).most_common()]
  accuracy = {}
  for k in ks:
    top = set(ranking[:k])
    accuracy[f'top_{k}_accuracy'] = sum(movie in top for movie in eval_ids) / len(eval_ids)
  return accuracy
