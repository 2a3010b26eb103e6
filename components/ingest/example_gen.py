"""ExampleGen executors over a raw MovieLens folder (ml-100k or ml-1m format).

Used through TFX's FileBasedExampleGen with `input_base` = the raw folder (or a folder of span
folders, components/ingest/spans.py: then the newest span's). Each rating becomes one
tf.Example joining the rating, the movie (id, title, genres) and the user.
- Executor: splits by a stable hash of each example (output_config hash buckets, 8:2 by
  default), the TFRS tutorials' protocol.
- TimeSplitExecutor: the same examples; the eval split is the latest ratings in time, the
  share given by the same hash buckets (2 of 10 buckets: the last 20% of ratings).

Both stop here, naming the folder, if a split comes out with no examples: every later
component would run on nothing, and the Trainer would fail without saying why. (An empty or
blank ratings file is refused earlier still, by the reader, naming the file.)
"""
import os
from typing import Any, Dict, List

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import features as f
from components.ingest import movielens


def to_tf_example(row: Dict[str, Any]) -> tf.train.Example:
  """One joined rating row (features.py names -> python values) as a tf.Example."""
  feature = {}
  for name in f.RAW_STRING_FEATURES:
    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[name].encode()]))
  for name in f.RAW_STRING_LIST_FEATURES:
    feature[name] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[value.encode() for value in row[name]]))
  for name in f.RAW_INT_FEATURES:
    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[name])]))
  for name in f.RAW_FLOAT_FEATURES:
    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(row[name])]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def MovieLensToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  """Reads the whole raw folder into tf.Examples: the input base, or with span folders the
  span ExampleGen's driver picked (split_pattern 'span-3/*': the folder of the pattern).

  The files are parsed in one worker so that a bad line stops the run with its file and line
  number (movielens.MovieLensFormatError); the examples are then spread out for what follows.
  """
  data_dir = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  folder = os.path.dirname(split_pattern)
  if folder:
    data_dir = data_dir.rstrip('/') + '/' + folder  # keeps gs://'s double slash
  return (pipeline
          | 'RawFolder' >> beam.Create([data_dir])
          | 'ParseAndJoin' >> beam.FlatMap(movielens.iter_examples)
          | 'ToTFExample' >> beam.Map(to_tf_example)
          | 'Spread' >> beam.Reshuffle())


class Executor(BaseExampleGenExecutor):
  """Random split by a stable hash of each example."""

  # Why a split can come out empty, and what to do; the message also gives the counts.
  EMPTY_SPLIT_HINT = (
      'the random split sends each rating to a split by a hash of it, so with very few '
      'ratings a split can get none: use more ratings')

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return MovieLensToExample

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
    splits = self._split_examples(pipeline, exec_properties)
    _require_examples_in_every_split(
        splits, exec_properties[standard_component_specs.INPUT_BASE_KEY], self.EMPTY_SPLIT_HINT)
    return splits

  def _split_examples(self, pipeline: beam.Pipeline,
                      exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
    return super().GenerateExamplesByBeam(pipeline, exec_properties)


def _require_examples_in_every_split(splits: Dict[str, beam.pvalue.PCollection],
                                     input_base: str, hint: str) -> None:
  """Adds a step that counts the examples of every split and fails the run if one has none."""
  counts = [
      examples
      | f'CountExamples[{name}]' >> beam.combiners.Count.Globally()
      | f'NameCount[{name}]' >> beam.Map(lambda count, name=name: (name, count))
      for name, examples in splits.items()]
  _ = (counts
       | 'AllSplitCounts' >> beam.Flatten()
       | 'CountsBySplit' >> beam.combiners.ToDict()
       | 'RequireExamples' >> beam.Map(_require_examples, list(splits), input_base, hint))


def _require_examples(counts: Dict[str, int], split_names: List[str], input_base: str,
                      hint: str) -> None:
  """Raises MovieLensFormatError naming the split(s) without examples, the counts and why."""
  empty = [name for name in split_names if counts[name] == 0]
  if empty:
    total = sum(counts.values())
    described = ', '.join(f'{name} {counts[name]}' for name in split_names)
    raise movielens.MovieLensFormatError(
        f"{input_base}: the {' and '.join(repr(name) for name in empty)} split"
        f"{'s' if len(empty) > 1 else ''} got no examples ({described}, of {total} "
        f"rating{'s' if total != 1 else ''} in all); {hint}", path=input_base)


def _timestamp(example: tf.train.Example) -> int:
  return example.features.feature[f.TIMESTAMP].int64_list.value[0]


def _train_fraction(output_config: example_gen_pb2.Output) -> float:
  buckets = [split.hash_buckets for split in output_config.split_config.splits]
  if len(buckets) != 2:
    raise ValueError('the time split needs exactly two output splits (train, eval), '
                     f'got {len(buckets)}')
  return buckets[0] / sum(buckets)


def time_cutoff(timestamps: List[int], train_fraction: float) -> int:
  """The first timestamp of the eval split: train holds the ratings strictly before it."""
  ordered = np.sort(np.asarray(timestamps, dtype=np.int64))
  return int(ordered[min(len(ordered) - 1, int(len(ordered) * train_fraction))])


class TimeSplitExecutor(Executor):
  """Train on the earlier ratings, evaluate on the latest ones."""

  EMPTY_SPLIT_HINT = (
      'the time split trains on the ratings strictly before the cutoff (the timestamp found '
      'at the train share of the ratings in time order), so train gets none when that many '
      'ratings share the earliest timestamp: use ratings spread over time, or --split random')

  def _split_examples(self, pipeline: beam.Pipeline,
                      exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    split_names = utils.generate_output_split_names(input_config, output_config)
    train_fraction = _train_fraction(output_config)

    examples = pipeline | 'InputToRecord' >> MovieLensToExample(  # pylint: disable=no-value-for-parameter
        exec_properties, input_config.splits[0].pattern)
    cutoff = (examples
              | 'Timestamps' >> beam.Map(_timestamp)
              | 'AllTimestamps' >> beam.combiners.ToList()
              | 'Cutoff' >> beam.Map(time_cutoff, train_fraction))
    train, evaluation = examples | 'SplitByTime' >> beam.Partition(
        lambda example, _, cutoff: int(_timestamp(example) >= cutoff), 2,
        cutoff=beam.pvalue.AsSingleton(cutoff))
    return {split_names[0]: train, split_names[1]: evaluation}
