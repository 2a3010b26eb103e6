"""A half-plus-two model with every TF Serving method kind, for the serving contract tests.

TF Serving's own test model (y = 0.5 x + 2) in the shape its clients know, written here with
the TF1 SavedModel builder (the only way to write classify and regress method names), not copied
from TF Serving's files. Signatures:

  serving_default      predict   x float [-1, 1]            -> y float [-1, 1]
  classify_x_to_y      classify  inputs (tf.Examples, x)    -> scores [-1, 1] (y)
  classify_x_to_class  classify  inputs                     -> classes ['y', 'y+1'], scores
  regress_x_to_y       regress   inputs                     -> outputs [-1, 1] (y)
  regress_x_to_y2      regress   inputs                     -> outputs [-1] (0.5 x + 3)

The examples' feature x is a float list of one value, required (a missing x is the graph's
INVALID_ARGUMENT). To test a real TF Serving, write it beside the recommender and serve both:

    python -m tests.toy_models /models/half_plus_two     # writes version 1
"""
import pathlib
import sys

import tensorflow as tf

MODEL_NAME = 'half_plus_two'


def half_plus_two(x):
  return 0.5 * x + 2.0


def write_half_plus_two(base_path, version: int = 1) -> pathlib.Path:
  """Writes <base_path>/<version>; returns that folder."""
  path = pathlib.Path(base_path) / str(version)
  signatures = tf.compat.v1.saved_model.signature_def_utils
  info = tf.compat.v1.saved_model.utils.build_tensor_info
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    a = tf.compat.v1.Variable(0.5, name='a')
    b = tf.compat.v1.Variable(2.0, name='b')
    x = tf.compat.v1.placeholder(tf.float32, [None, 1], name='x')
    y = tf.add(a * x, b, name='y')
    examples = tf.compat.v1.placeholder(tf.string, [None], name='tf_example')
    parsed = tf.io.parse_example(examples, {'x': tf.io.FixedLenFeature([1], tf.float32)})
    example_y = tf.add(a * parsed['x'], b, name='example_y')
    example_y2 = tf.reshape(a * parsed['x'] + b + 1.0, [-1], name='example_y2')
    classes = tf.tile(tf.constant([['y', 'y+1']]), [tf.shape(examples)[0], 1])
    session.run(tf.compat.v1.global_variables_initializer())
    builder = tf.compat.v1.saved_model.Builder(str(path))
    builder.add_meta_graph_and_variables(session, ['serve'], signature_def_map={
        'serving_default': signatures.predict_signature_def({'x': x}, {'y': y}),
        'classify_x_to_y': signatures.classification_signature_def(
            examples, None, example_y),
        'classify_x_to_class': signatures.classification_signature_def(
            examples, classes, tf.concat([example_y, example_y + 1.0], axis=1)),
        'regress_x_to_y': signatures.regression_signature_def(examples, example_y),
        'regress_x_to_y2': signatures.regression_signature_def(examples, example_y2),
    })
    builder.save()
  return path


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(f'usage: python -m tests.toy_models MODEL_BASE_PATH ({__doc__.splitlines()[0]})')
  print(write_half_plus_two(sys.argv[1]))
