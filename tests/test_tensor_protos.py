"""serving/tensor_protos.py: Predict's TensorProtos written as TF Serving writes them (typed
fields) and read back to the arrays TensorFlow's own tf.make_ndarray gives."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving import tensor_protos

ARRAYS = [
    np.array([[0.5, -1.25, 3.0]], dtype=np.float32),
    np.array([1e300, -2.5], dtype=np.float64),
    np.array([[-128, 127]], dtype=np.int8),
    np.array([-32768, 32767], dtype=np.int16),
    np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32),
    np.array([0, 255], dtype=np.uint8),
    np.array([0, 65535], dtype=np.uint16),
    np.array([[2**62, -7]], dtype=np.int64),
    np.array([2**32 - 1], dtype=np.uint32),
    np.array([2**64 - 1], dtype=np.uint64),
    np.array([[True, False]]),
    np.array([[b'Star Wars (1977)', b''], [b'\xff\x00', b'x']], dtype=object),
    np.array(3.5, dtype=np.float32),  # a scalar
    np.zeros((0, 10), dtype=np.float32),  # no rows
]


@pytest.mark.parametrize('array', ARRAYS, ids=lambda array: f'{array.dtype}{array.shape}')
def test_written_protos_hold_typed_values_that_tensorflow_reads_back(array):
  proto = tensor_pb2.TensorProto()
  tensor_protos.write(array, proto)
  assert not proto.tensor_content  # TF Serving's AsProtoField, not AsProtoTensorContent
  expected = tf.make_tensor_proto(array)
  assert proto.dtype == expected.dtype
  assert proto.tensor_shape == expected.tensor_shape
  for read in (tf.make_ndarray(proto), tensor_protos.read(proto)):
    assert read.dtype == tf.make_ndarray(expected).dtype
    assert read.shape == array.shape
    np.testing.assert_array_equal(read, array)


def test_strings_are_written_to_string_val_from_bytes_or_text():
  proto = tensor_pb2.TensorProto()
  tensor_protos.write(np.array(['Amélie', 'x']), proto)  # numpy text: UTF-8, as TensorFlow
  assert proto.dtype == types_pb2.DT_STRING
  assert list(proto.string_val) == ['Amélie'.encode(), b'x']
  proto = tensor_pb2.TensorProto()
  tensor_protos.write(np.array([b'a', 'Amélie'], dtype=object), proto)  # bytes and text
  assert list(proto.string_val) == [b'a', 'Amélie'.encode()]
  proto = tensor_pb2.TensorProto()
  tensor_protos.write(np.array([b'a', b'bc']), proto)  # fixed-width bytes
  assert list(proto.string_val) == [b'a', b'bc']


def test_other_dtypes_are_left_to_tensorflow():
  array = np.array([1.5, -2.0], dtype=np.float16)
  proto = tensor_pb2.TensorProto()
  tensor_protos.write(array, proto)
  assert proto == tf.make_tensor_proto(array)
  np.testing.assert_array_equal(tensor_protos.read(proto), array)


@pytest.mark.parametrize('proto', [
    tf.make_tensor_proto(np.arange(6, dtype=np.float32).reshape(2, 3)),  # tensor_content
    tf.make_tensor_proto(7, dtype=tf.int64, shape=[2, 2]),  # one value filling the shape
    tf.make_tensor_proto(np.array([1 + 2j], dtype=np.complex64)),
    tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape={'dim': [{'size': 2}]},
                           int_val=[4, 5]),
    # Fewer values than the shape: the last one fills the rest (TensorFlow's C++ as Python's).
    tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={'dim': [{'size': 3}]},
                           float_val=[1.0, 2.0]),
], ids=['tensor_content', 'filled', 'complex', 'int_val', 'short'])
def test_any_request_proto_reads_as_tensorflow_reads_it(proto):
  read, expected = tensor_protos.read(proto), tf.make_ndarray(proto)
  assert read.dtype == expected.dtype and read.shape == expected.shape
  np.testing.assert_array_equal(read, expected)

