"""The time-based split: the eval split holds the latest ratings."""
import apache_beam as beam
import tensorflow as tf
from apache_beam.testing.util import assert_that
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import features as f
from components.ingest import example_gen, movielens


def test_cutoff_puts_the_last_fifth_of_ratings_in_eval():
  timestamps = list(range(100, 0, -1))
  cutoff = example_gen.time_cutoff(timestamps, 0.8)
  assert sum(t < cutoff for t in timestamps) == 80


def test_time_split_executor_orders_train_valid_and_eval_in_time(small_dataset):
  exec_properties = {
      standard_component_specs.INPUT_BASE_KEY: str(small_dataset),
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
          example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='raw', pattern='*')])),
      standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
          example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
              example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=7),
              example_gen_pb2.SplitConfig.Split(name='valid', hash_buckets=1),
              example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=2)]))),
  }
  all_timestamps = sorted(r.timestamp for r in movielens.iter_ratings(small_dataset))
  valid_from = example_gen.time_cutoff(all_timestamps, 0.7)
  eval_from = example_gen.time_cutoff(all_timestamps, 0.8)

  def timestamps_of(split):
    return splits[split] | f'Timestamps[{split}]' >> beam.FlatMap(
        lambda batch: [tf.train.Example.FromString(example).features.feature[
            f.TIMESTAMP].int64_list.value[0] for example in batch])

  def check(predicate, expected_count):
    def _check(values):
      assert len(values) == expected_count, (len(values), expected_count)
      assert all(predicate(value) for value in values)
    return _check

  with beam.Pipeline() as pipeline:
    splits = example_gen.TimeSplitExecutor().GenerateExamplesByBeam(pipeline, exec_properties)
    train_count = sum(t < valid_from for t in all_timestamps)
    valid_count = sum(valid_from <= t < eval_from for t in all_timestamps)
    assert_that(timestamps_of('train'), check(lambda t: t < valid_from, train_count),
                label='train')
    assert_that(timestamps_of('valid'),
                check(lambda t: valid_from <= t < eval_from, valid_count), label='valid')
    assert_that(timestamps_of('eval'),
                check(lambda t: t >= eval_from,
                      len(all_timestamps) - train_count - valid_count), label='eval')
  assert 0.65 < train_count / len(all_timestamps) <= 0.7
  assert 0.05 < valid_count / len(all_timestamps) <= 0.1
