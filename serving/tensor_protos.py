"""TensorProto <-> numpy for Predict, as TF Serving writes and reads them.

TF Serving answers Predict with each output in the TensorProto's typed value field (float_val,
int64_val, string_val...: Tensor::AsProtoField, its default "for backward compatibility"), not
in tensor_content, and clients that read `outputs['scores'].float_val` rely on it.
tf.make_tensor_proto writes tensor_content instead, after Python checks that cost more than
the copy. Reading, the common request (typed values, one per element) becomes an array
directly; anything else (tensor_content, a value repeated to fill the shape, half or complex
dtypes) goes to tf.make_ndarray. Together: 0.09 ms of a single-user Predict's 0.47 ms in the
servicer (four outputs; docs/benchmarks.md, "TensorProtos as TF Serving writes them").
"""
import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# numpy dtype -> (DataType, TensorProto field), as Tensor::AsProtoField writes them.
_FIELDS = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, 'float_val'),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, 'double_val'),
    np.dtype(np.int8): (types_pb2.DT_INT8, 'int_val'),
    np.dtype(np.int16): (types_pb2.DT_INT16, 'int_val'),
    np.dtype(np.int32): (types_pb2.DT_INT32, 'int_val'),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, 'int_val'),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, 'int_val'),
    np.dtype(np.int64): (types_pb2.DT_INT64, 'int64_val'),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, 'uint32_val'),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, 'uint64_val'),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, 'bool_val'),
}
# And back, for reading: the same pairs (numpy converts the values as tf.make_ndarray does).
_READ = {dtype: (numpy_dtype, field) for numpy_dtype, (dtype, field) in _FIELDS.items()}
_READ[types_pb2.DT_STRING] = (object, 'string_val')


def write(array: np.ndarray, proto: tensor_pb2.TensorProto) -> None:
  """Writes array (any shape) into an empty proto: dtype, shape, and its values in the typed
  field. Strings (an object array of bytes, as Session::Run returns them) go to string_val;
  anything else (text, half or complex dtypes) is written by tf.make_tensor_proto."""
  array = np.asarray(array)
  values = array.ravel().tolist()
  if array.dtype.kind in 'OS' and all(isinstance(value, bytes) for value in values):
    dtype, field = types_pb2.DT_STRING, 'string_val'
  elif array.dtype in _FIELDS:
    dtype, field = _FIELDS[array.dtype]
  else:
    proto.CopyFrom(tf.make_tensor_proto(array))
    return
  proto.dtype = dtype
  for size in array.shape:
    proto.tensor_shape.dim.add(size=size)
  getattr(proto, field).extend(values)


def read(proto: tensor_pb2.TensorProto) -> np.ndarray:
  """The proto's array. ValueError/TypeError for one TensorFlow cannot read (as
  tf.make_ndarray). The caller has checked the claimed shape's size (grpc_service.py)."""
  known = _READ.get(proto.dtype)
  if known is not None and not proto.tensor_content:
    dtype, field = known
    values = getattr(proto, field)
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if len(values) == math.prod(shape):
      return np.array(values, dtype=dtype).reshape(shape)
  return tf.make_ndarray(proto)
