"""The Evaluator's TFMA config: top-k accuracy over the whole catalogue, gated on one k.

The model's eval signature gives, for each eval rating, how many movie vocabulary indices
score above the rated movie (its rank, 0 = the best); TopKAccuracy is then the share of eval
ratings whose movie is in the user's top k: the top-k accuracy the TFRS tutorials report
(Keras' SparseTopKCategoricalAccuracy on every movie's scores gives the same number, but TFMA
would then hold thousands of catalogue-wide score vectors: 9.6 GiB at 1M ratings of ml-25m's
62k movies; TFMA 0.47's SetMatchRecall over top-k ids crashes when a baseline model is
evaluated beside it, which the no-regression gate needs).
"""
import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow.core.protobuf import saved_model_pb2
from tfx.dsl.io import fileio

from components import features as f


def top_k_metric_name(k: int) -> str:
  return f'top_{k}_accuracy'


RMSE_METRIC = 'rating_rmse'


def _hits(y_true, y_pred, k):
  """1.0 where the rank (y_pred, [batch, 1]) is below k; the label is not needed."""
  del y_true
  return tf.cast(y_pred < k, tf.float32)


class TopKAccuracy(tf.keras.metrics.MeanMetricWrapper):
  """Share of examples whose movie ranks in the top k, from the eval signature's label_rank
  (TFMA loads it by class_name and this module)."""

  def __init__(self, k: int = 10, name: Optional[str] = None, dtype=None):
    super().__init__(_hits, name=name or top_k_metric_name(k), dtype=dtype, k=k)
    self.k = k

  def get_config(self):
    return {'k': self.k, 'name': self.name, 'dtype': self.dtype}


def _gate(direction, bound: dict, max_change: float) -> List[tfma.PerSliceMetricThreshold]:
  """A value bound, and at most max_change worse than the latest blessed model, on the whole
  eval split only (a MetricConfig's plain threshold would hold every user segment to it)."""
  worse = -max_change - 1e-10 if direction == tfma.MetricDirection.HIGHER_IS_BETTER else (
      max_change + 1e-10)
  return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=(
      tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(**bound),
          change_threshold=tfma.GenericChangeThreshold(direction=direction,
                                                       absolute={'value': worse}))))]


def make_eval_config(top_ks: Sequence[int], gate_k: int, min_accuracy: float,
                     max_regression: float = 0.0,
                     max_rmse: Optional[float] = None) -> tfma.EvalConfig:
  """Reports top-k accuracy for each k; blesses only if top-`gate_k` accuracy is at least
  `min_accuracy` and at most `max_regression` below the latest blessed model's.

  With max_rmse (multitask), the model's `rating` output is gated too: RMSE of the eval
  ratings at most max_rmse and at most max_regression above the blessed model's.
  """
  if gate_k not in top_ks:
    raise ValueError(f'the gated k ({gate_k}) must be one of the reported ks {list(top_ks)}')
  gate = _gate(tfma.MetricDirection.HIGHER_IS_BETTER,
               {'lower_bound': {'value': min_accuracy}}, max_regression)
  # The examples per slice (the model card's user segments show how many each holds).
  metrics = [tfma.MetricConfig(class_name='ExampleCount')] + [
      tfma.MetricConfig(
          class_name=TopKAccuracy.__name__, module=__name__,
          config=f'"name": "{top_k_metric_name(k)}", "k": {k}',
          per_slice_thresholds=gate if k == gate_k else None)
      for k in sorted(top_ks)
  ]
  if max_rmse is None:
    model_spec = tfma.ModelSpec(
        signature_name=f.EVAL_SIGNATURE, prediction_key=f.EVAL_LABEL_RANK,
        preprocessing_function_names=[f.TRANSFORM_SIGNATURE], label_key=f.MOVIE_ID_INDEX)
    metrics_specs = [tfma.MetricsSpec(metrics=metrics)]
  else:  # two outputs, each with its label
    model_spec = tfma.ModelSpec(
        signature_name=f.EVAL_SIGNATURE, preprocessing_function_names=[f.TRANSFORM_SIGNATURE],
        label_keys={f.EVAL_LABEL_RANK: f.MOVIE_ID_INDEX, f.OUTPUT_RATING: f.USER_RATING})
    rmse = tfma.MetricConfig(
        class_name='RootMeanSquaredError', config=f'"name": "{RMSE_METRIC}"',
        per_slice_thresholds=_gate(tfma.MetricDirection.LOWER_IS_BETTER,
                                   {'upper_bound': {'value': max_rmse}}, max_regression))
    metrics_specs = [tfma.MetricsSpec(metrics=metrics, output_names=[f.EVAL_LABEL_RANK]),
                     tfma.MetricsSpec(metrics=[rmse], output_names=[f.OUTPUT_RATING])]
  # The whole split, and each user segment (transform_features' user_segment).
  slices = [tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[f.USER_SEGMENT])]
  return tfma.EvalConfig(model_specs=[model_spec], slicing_specs=slices,
                         metrics_specs=metrics_specs)


def plain_tf_model_path(serving_model_path: str) -> str:
  """The trainer's Format-TFMA beside a Format-Serving folder, when there is one."""
  plain = os.path.join(os.path.dirname(serving_model_path.rstrip('/')), 'Format-TFMA')
  return plain if fileio.exists(os.path.join(plain, 'saved_model.pb')) else serving_model_path


class OutdatedModelError(ValueError):
  """A model exported by an older version of this project, which the Evaluator cannot read."""


def check_eval_signature(model_path: str) -> None:
  """OutdatedModelError, naming the model and what to do, when its eval signature does not give
  label_rank: a model exported before 2026-12-05 gave every movie's scores instead, so a
  workdir whose latest blessed model is that old cannot evaluate it as the baseline."""
  saved_model = saved_model_pb2.SavedModel()
  with fileio.open(os.path.join(model_path, 'saved_model.pb'), 'rb') as file:
    saved_model.ParseFromString(file.read())
  outputs = saved_model.meta_graphs[0].signature_def[f.EVAL_SIGNATURE].outputs
  if f.EVAL_LABEL_RANK not in outputs:
    raise OutdatedModelError(
        f'{model_path}: its {f.EVAL_SIGNATURE} signature gives {sorted(outputs)}, not '
        f'{f.EVAL_LABEL_RANK}: the model was exported by an older version of this project, '
        'and the Evaluator cannot compare a new model with it: run the pipeline in a new '
        '--workdir (its first run has no baseline to compare with)')


def custom_eval_shared_model(eval_saved_model_path: str, model_name: str,
                             eval_config: tfma.EvalConfig, **kwargs) -> tfma.types.EvalSharedModel:
  """The Evaluator's model loader (TFX calls it through Evaluator(module_path=this module)).

  With an EvalConfig, TFX's Evaluator loads Format-Serving for every non-estimator model, and
  ours holds a ScaNN index whose ops its Beam workers do not have. Both the candidate and the
  baseline are evaluated from the plain-TF Format-TFMA instead: same towers and catalogue.
  """
  model_path = plain_tf_model_path(eval_saved_model_path)
  check_eval_signature(model_path)
  return tfma.default_eval_shared_model(
      eval_saved_model_path=model_path, model_name=model_name, eval_config=eval_config,
      **kwargs)


# --- reading the Evaluator's output ---------------------------------------------------------

def evaluation_metrics(evaluation_uri: str, model: str) -> Dict[str, float]:
  """Overall metrics of one model of the evaluation: 'candidate' (or '' when it was
  evaluated alone) or 'baseline'; the candidate-minus-baseline diffs are left out."""
  return metrics_by_slice(evaluation_uri, model).get('', {})


def metrics_by_slice(evaluation_uri: str, model: str) -> Dict[str, Dict[str, float]]:
  """{slice: {metric: value}} of one model ('candidate' or 'baseline'); slice '' is the
  whole eval split, the others the user segments ('known user', 'history 1-4', ...)."""
  by_slice: Dict[str, Dict[str, float]] = {}
  for slice_metrics in tfma.load_metrics(evaluation_uri):
    keys = slice_metrics.slice_key.single_slice_keys
    name = ', '.join(key.bytes_value.decode() if key.HasField('bytes_value')
                     else str(getattr(key, key.WhichOneof('kind'))) for key in keys)
    values = by_slice.setdefault(name, {})
    for key_and_value in slice_metrics.metric_keys_and_values:
      key = key_and_value.key
      if key.is_diff or key.model_name not in ({model, ''} if model == 'candidate' else {model}):
        continue
      if key_and_value.value.HasField('double_value'):
        values[key.name] = key_and_value.value.double_value.value
  return by_slice


def failed_thresholds(evaluation_uri: str) -> List[str]:
  """'metric: why' for each threshold the evaluated model failed."""
  failures = []
  for slice_result in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
    for metric in slice_result.failures:
      failures.append(f'{metric.metric_key.name}: {metric.message}')
  return failures
