"""The Evaluator's model loader refuses a baseline whose eval signature predates label_rank,
and the CLI reports it as a message."""
import pytest
import tensorflow as tf

from components import eval_config
from components import features as f
from pipeline import cli


def _save(path, output_name):
  module = tf.Module()
  module.evaluate = tf.function(lambda examples: {output_name: tf.zeros([tf.size(examples), 1])},
                                input_signature=[tf.TensorSpec([None], tf.string)])
  tf.saved_model.save(module, str(path), signatures={
      f.EVAL_SIGNATURE: module.evaluate.get_concrete_function()})
  return str(path)


def test_a_model_whose_eval_signature_gives_the_rank_is_accepted(tmp_path):
  eval_config.check_eval_signature(_save(tmp_path / 'new', f.EVAL_LABEL_RANK))


def test_an_older_model_is_refused_naming_it_and_what_to_do(tmp_path):
  path = _save(tmp_path / 'old', 'scores')
  with pytest.raises(eval_config.OutdatedModelError,
                     match=rf"{path}: its eval_examples signature gives \['scores'\]"
                           r", not label_rank.*new --workdir") as raised:
    eval_config.check_eval_signature(path)
  # The CLI prints it as a message (exit code 1), even as the cause of Beam's own error.
  assert cli.user_error_message(RuntimeError('in Beam')) is None
  wrapped = RuntimeError('the Evaluator failed')
  wrapped.__cause__ = raised.value
  assert cli.user_error_message(wrapped) == str(raised.value)
