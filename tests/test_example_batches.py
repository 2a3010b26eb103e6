"""Batches of tf.Examples: the C-framed TFRecord files read back by TensorFlow and by Beam, and
ReadExampleBatches giving the files' examples as Arrow columns."""
import io

import apache_beam as beam
from apache_beam.io import tfrecordio
from apache_beam.testing.util import assert_that, equal_to
import pyarrow as pa
import pytest
import tensorflow as tf

from components import example_batches


def _example(user: bytes, rating: float) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      'user_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[user])),
      'user_rating': tf.train.Feature(float_list=tf.train.FloatList(value=[rating])),
  })).SerializeToString()


@pytest.mark.parametrize('record', [b'', b'x', b'\x00' * 1000, _example(b'7', 4.5)])
def test_a_record_is_framed_as_beams_tfrecord_writer_frames_it(record):
  beams = io.BytesIO()
  tfrecordio._TFRecordUtil.write_record(beams, record)  # pylint: disable=protected-access
  assert example_batches.tfrecord_frame(record) == beams.getvalue()


def test_batches_written_by_the_sink_read_back_as_record_batches_of_every_example(tmp_path):
  examples = [_example(str(user).encode(), user / 2) for user in range(1, 11)]
  with beam.Pipeline() as pipeline:
    _ = (pipeline | beam.Create([examples[:3], examples[3:7], examples[7:]])
         | beam.io.Write(example_batches.ExampleBatchSink(str(tmp_path / 'out' / 'data'))))
  files = sorted(str(path) for path in (tmp_path / 'out').iterdir())
  assert files and all(path.endswith('.gz') for path in files)
  # TensorFlow checks each record's crc32c as it reads.
  assert sorted(tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator()) == (
      sorted(examples))

  def rows(tag: str, batch: pa.RecordBatch):
    assert batch.num_rows <= 4
    return [(tag, user, rating) for user, rating in zip(
        batch.column(batch.schema.get_field_index('user_id')).flatten().to_pylist(),
        batch.column(batch.schema.get_field_index('user_rating')).flatten().to_pylist())]

  with beam.Pipeline() as pipeline:
    read = (pipeline | example_batches.ReadExampleBatches(
        {'all': str(tmp_path / 'out' / '*'), 'again': files[0]}, batch_size=4)
            | beam.FlatMapTuple(rows))
    first_file = [tf.train.Example.FromString(record).features.feature for record in
                  tf.data.TFRecordDataset(files[0], compression_type='GZIP').as_numpy_iterator()]
    assert_that(read, equal_to(
        [('all', str(user).encode(), user / 2) for user in range(1, 11)]
        + [('again', example['user_id'].bytes_list.value[0],
            example['user_rating'].float_list.value[0]) for example in first_file]))


def test_a_pattern_that_matches_no_file_is_an_error_naming_it(tmp_path):
  with pytest.raises(FileNotFoundError, match='no files match .*nothing-here'):
    with beam.Pipeline() as pipeline:
      _ = pipeline | example_batches.ReadExampleBatches(
          {'train': str(tmp_path / 'nothing-here' / '*')})
