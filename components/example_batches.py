"""Batches of tf.Examples: reading TFRecord files into Arrow record batches, encoding record
batches, and writing TFRecord files a batch at a time.

ExampleGen and TimelineGen build examples as columns (pyarrow record batches), serialize them
with tfx_bsl's C++ encoder and hand them to Beam a batch at a time: building protos in Python
and one Beam element per example cost more than everything else these stages do. For the same
reason TimelineGen reads its input with tf.data's C++ TFRecord reader (Beam's reads and checks
each record in Python: a third of the stage's time), and records are framed with a C crc32c.
"""
import functools
import struct
from typing import Iterator, List, Mapping, Tuple

import absl.logging
import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink
import google_crc32c
import pyarrow as pa
from tfx.dsl.io import fileio


@functools.lru_cache(maxsize=None)
def _encoder():
  """One encoder per worker process (made where it runs, not pickled to it)."""
  from tfx_bsl.coders import example_coder
  return example_coder.RecordBatchToExamplesEncoder()


def encode_examples(batch: pa.RecordBatch) -> List[bytes]:
  """Serialized tf.Examples of a record batch's rows (tfx_bsl's C++ encoder): each column a
  feature, list<binary> as bytes_list, list<int64> as int64_list, list<float32> as float_list."""
  return _encoder().encode(batch)


class ExampleBatchSink(filebasedsink.FileBasedSink):
  """Gzipped TFRecord files (what TFX's WriteSplit writes), from batches (lists) of serialized
  examples: one Beam element, one compressor call and one write per batch, where
  WriteToTFRecord pays them per example (about half of ExampleGen's time at 1M ratings)."""

  def __init__(self, file_path_prefix: str):
    super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix='.gz',
                     mime_type='application/octet-stream')

  def write_record(self, file_handle, value: List[bytes]) -> None:
    file_handle.write(b''.join(map(tfrecord_frame, value)))


def _masked_crc(data: bytes) -> bytes:
  crc = google_crc32c.value(data)
  return struct.pack('<I', (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff)


def tfrecord_frame(record: bytes) -> bytes:
  """One record as a TFRecord file holds it: length, masked crc32c of the length, the data,
  masked crc32c of the data (the format TensorFlow checks on reading)."""
  length = struct.pack('<Q', len(record))
  return length + _masked_crc(length) + record + _masked_crc(record)


if google_crc32c.implementation != 'c':  # its pure-Python fallback is slower than Beam's
  absl.logging.warning('google_crc32c has no C extension here: writing TFRecords is slow')


def _decoded_batches(path: str, batch_size: int) -> Iterator[pa.RecordBatch]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (in the worker)
  from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel
  decoder = example_coder.ExamplesToRecordBatchDecoder()
  dataset = tf.data.TFRecordDataset(path, compression_type='GZIP' if path.endswith('.gz')
                                    else None).batch(batch_size)
  for records in dataset.as_numpy_iterator():
    yield decoder.DecodeBatch(list(records))


def _tagged_batches(tag_and_path: Tuple[str, str], batch_size: int
                    ) -> Iterator[Tuple[str, pa.RecordBatch]]:
  tag, path = tag_and_path
  for batch in _decoded_batches(path, batch_size):
    yield tag, batch


@beam.ptransform_fn
def ReadExampleBatches(pipeline: beam.Pipeline, file_patterns: Mapping[str, str],
                       batch_size: int = 4096):
  """(tag, record batch) for the tf.Examples of the TFRecord files (gzipped when named *.gz)
  matching each {tag: file pattern}: Arrow record batches of up to batch_size rows, one list
  column a feature (tfx_bsl's decoder, types inferred; what TFXIO's TFExampleRecord gives
  without a schema). Files are spread over the workers; each is read by one (a gzipped file
  cannot be split anyway). One read for every pattern, not one a pattern joined by Flatten:
  Beam's local runner holds a Flatten's input in memory (1M ratings' batches: 0.9 GB)."""
  files = []
  for tag, pattern in file_patterns.items():
    matched = sorted(fileio.glob(pattern))
    if not matched:
      raise FileNotFoundError(f'no files match {pattern}')
    files += [(tag, path) for path in matched]
  return (pipeline
          | 'Files' >> beam.Create(files)
          | 'Spread' >> beam.Reshuffle()
          | 'Decode' >> beam.FlatMap(_tagged_batches, batch_size))
