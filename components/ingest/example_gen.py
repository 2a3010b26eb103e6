"""ExampleGen executors over a raw MovieLens folder (ml-100k, ml-1m or the CSV family).

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
import bisect
import hashlib
import os
from typing import Any, Dict, List, Sequence, Tuple

import apache_beam as beam
import numpy as np
from tfx import types
from tfx.components.example_gen import utils, write_split
from tfx.components.util import examples_utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import features as f
from components.example_batches import ExampleBatchSink, encode_examples
from components.ingest import byte_ranges, movielens


def raw_folder(exec_properties: Dict[str, Any], split_pattern: str) -> str:
  """The raw folder a run reads: the input base, or with span folders the span ExampleGen's
  driver picked (split_pattern 'span-3/*': the folder of the pattern)."""
  data_dir = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  folder = os.path.dirname(split_pattern)
  if folder:
    data_dir = data_dir.rstrip('/') + '/' + folder  # keeps gs://'s double slash
  return data_dir


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def MovieLensToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  """Reads the raw folder into serialized tf.Examples, one element each: TFX's per-example
  interface (GetInputSourceToExamplePTransform). The executors below keep the examples in
  batches instead (GenerateExamplesByBeam), which is what they write."""
  ratings = pipeline | 'ReadRatings' >> byte_ranges.ReadRatingBatches(  # pylint: disable=no-value-for-parameter
      raw_folder(exec_properties, split_pattern))
  return ratings.batches | 'ToTFExamples' >> beam.FlatMap(encode_examples)


class Executor(BaseExampleGenExecutor):
  """Random split by a stable hash of each example (TFX's rule: sha256 of the serialized
  example, into the output config's hash buckets)."""

  # Why a split can come out empty, and what to do; the message also gives the counts.
  EMPTY_SPLIT_HINT = (
      'the random split sends each rating to a split by a hash of it, so with very few '
      'ratings a split can get none: use more ratings')

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return MovieLensToExample

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
    """split name -> batches (lists) of serialized tf.Examples."""
    input_config, output_config, split_names = _configs(exec_properties)
    ratings = pipeline | 'ReadRatings' >> byte_ranges.ReadRatingBatches(  # pylint: disable=no-value-for-parameter
        raw_folder(exec_properties, input_config.splits[0].pattern))
    splits = self._split(ratings, output_config, split_names)
    _require_examples_in_every_split(
        splits, exec_properties[standard_component_specs.INPUT_BASE_KEY], self.EMPTY_SPLIT_HINT)
    return splits

  def _split(self, ratings: byte_ranges.RatingBatches, output_config: example_gen_pb2.Output,
             split_names: List[str]) -> Dict[str, beam.pvalue.PCollection]:
    buckets = np.cumsum([split.hash_buckets for split in output_config.split_config.splits])
    splits = ratings.batches | 'SplitByHash' >> beam.FlatMap(
        _split_by_hash, buckets.tolist(), split_names).with_outputs(*split_names)
    return {name: splits[name] for name in split_names}

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    """TFX's ExampleGen Do, writing batches, and without WriteSplit's per-example Reshuffle.

    Why: on a local runner that shuffle holds every example in memory at once (2.2 GiB peak
    at 1M ratings against 1.1 without it: it would not fit at 10M) and costs a third of the
    stage's time. The examples are already spread over the output files by byte range, and
    every reader downstream shuffles or groups (Transform's analyzers need no order;
    TimelineGen groups by user; the Trainer reads with a shuffle buffer). Output: the same
    gzipped TFRecords of serialized tf.Examples, split names and properties as TFX's.
    """
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    _, _, split_names = _configs(exec_properties)
    examples.split_names = artifact_utils.encode_split_names(split_names)
    with self._make_beam_pipeline() as pipeline:
      for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
        _ = split | f'WriteSplit[{name}]' >> beam.io.Write(ExampleBatchSink(os.path.join(
            artifact_utils.get_split_uri([examples], name), write_split.DEFAULT_FILE_NAME)))
    examples_utils.set_payload_format(examples, exec_properties.get(
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY, example_gen_pb2.FORMAT_TF_EXAMPLE))
    examples_utils.set_file_format(examples, write_split.to_file_format_str(
        exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                            example_gen_pb2.FORMAT_TFRECORDS_GZIP)))


def _configs(exec_properties: Dict[str, Any]
             ) -> Tuple[example_gen_pb2.Input, example_gen_pb2.Output, List[str]]:
  """The input and output configs, and the output split names."""
  input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                            input_config)
  proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                            output_config)
  return (input_config, output_config,
          utils.generate_output_split_names(input_config, output_config))


def _split_by_hash(batch, buckets: List[int], split_names: List[str]):
  """A record batch's serialized tf.Examples, one list per split, by TFX's hash rule."""
  parts = [[] for _ in split_names]
  for example in encode_examples(batch):
    bucket = int(hashlib.sha256(example).hexdigest(), 16) % buckets[-1]
    parts[bisect.bisect(buckets, bucket)].append(example)
  for name, part in zip(split_names, parts):
    if part:
      yield beam.pvalue.TaggedOutput(name, part)


def _require_examples_in_every_split(splits: Dict[str, beam.pvalue.PCollection],
                                     input_base: str, hint: str) -> None:
  """Adds a step that counts the examples of every split (batches of them) and fails the run
  if one has none."""
  counts = [
      batches
      | f'BatchSizes[{name}]' >> beam.Map(len)
      | f'CountExamples[{name}]' >> beam.CombineGlobally(sum)
      | f'NameCount[{name}]' >> beam.Map(lambda count, name=name: (name, count))
      for name, batches in splits.items()]
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


def _time_fractions(output_config: example_gen_pb2.Output) -> List[float]:
  """The share of the ratings before each split's end, for every split but the last: the
  splits follow each other in time in the output config's order (train, valid, eval)."""
  buckets = [split.hash_buckets for split in output_config.split_config.splits]
  if len(buckets) < 2:
    raise ValueError('the time split needs at least two output splits (train, eval), '
                     f'got {len(buckets)}')
  return (np.cumsum(buckets[:-1]) / sum(buckets)).tolist()


def time_cutoff(timestamps: Sequence[int], train_fraction: float) -> int:
  """The first timestamp of the eval split: train holds the ratings strictly before it."""
  timestamps = np.asarray(timestamps, dtype=np.int64)
  rank = min(len(timestamps) - 1, int(len(timestamps) * train_fraction))
  return int(np.partition(timestamps, rank)[rank])


def _split_by_time(batch, cutoffs: List[int], split_names: List[str]):
  """A record batch's serialized tf.Examples, one list per split: split i holds the ratings
  from cutoffs[i - 1] (inclusive) to cutoffs[i] (exclusive)."""
  split_of = np.searchsorted(np.asarray(cutoffs, np.int64),
                             np.asarray(batch.column(f.TIMESTAMP).flatten()), side='right')
  parts = [[] for _ in split_names]
  for example, split in zip(encode_examples(batch), split_of.tolist()):
    parts[split].append(example)
  for name, part in zip(split_names, parts):
    if part:
      yield beam.pvalue.TaggedOutput(name, part)


class TimeSplitExecutor(Executor):
  """Train on the earlier ratings, evaluate on the latest ones (and with a validation split,
  validate on the ones just before those)."""

  EMPTY_SPLIT_HINT = (
      'the time split trains on the ratings strictly before the cutoff (the timestamp found '
      'at the train share of the ratings in time order), so train gets none when that many '
      'ratings share the earliest timestamp: use ratings spread over time, or --split random')

  def _split(self, ratings: byte_ranges.RatingBatches, output_config: example_gen_pb2.Output,
             split_names: List[str]) -> Dict[str, beam.pvalue.PCollection]:
    fractions = _time_fractions(output_config)

    def cutoffs(arrays):
      timestamps = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
      return [time_cutoff(timestamps, fraction) for fraction in fractions]

    # The kept ratings' timestamps, 8 bytes a rating, meet in one worker for the exact cutoffs.
    cutoff = (ratings.kept_timestamps
              | 'AllTimestamps' >> beam.combiners.ToList()
              | 'Cutoff' >> beam.Map(cutoffs))
    splits = ratings.batches | 'SplitByTime' >> beam.FlatMap(
        _split_by_time, beam.pvalue.AsSingleton(cutoff), split_names).with_outputs(*split_names)
    return {name: splits[name] for name in split_names}
