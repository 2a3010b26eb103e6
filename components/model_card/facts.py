"""The facts a model card shows, read from the artifacts of the run that pushed the model.

Everything here is read, nothing recomputed: the Evaluator's metrics and thresholds (TFMA's
output), the Trainer's TensorBoard event files (per-epoch losses and top-k accuracy), the
transform's vocabularies, the pushed SavedModel's signatures, and the artifacts' MLMD ids.
"""
import dataclasses
import glob
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_model_analysis.writers import eval_config_writer

from components import features as f
from components.eval_config import evaluation_metrics, metrics_by_slice

# What each model kind answers (components/model/kinds.py), for the card's first line.
KIND_SUMMARIES = {
    'retrieval': 'two-tower retrieval: a user embedding searched against every movie',
    'multitask': 'two-tower retrieval with a rating head (also predicts ratings)',
    'sequential': "next-movie retrieval from the user's watch history",
}
# ModelConfig fields worth a reader's attention (the rest are in the model's config JSON).
SHOWN_CONFIG = ('kind', 'history_encoder', 'train_positions', 'embedding_dim', 'layer_sizes',
                'epochs', 'early_stopping_patience', 'warm_start_epochs', 'refit_epochs',
                'ensemble_size', 'optimizer', 'learning_rate', 'batch_size', 'embedding_l2',
                'query_dropout', 'negatives', 'max_context_length', 'use_timestamps', 'use_user_id', 'index',
                'exclude_seen', 'fallback_days', 'seed')


@dataclasses.dataclass
class Metric:
  name: str
  value: float
  baseline: Optional[float]  # the latest blessed model's, when it was evaluated beside
  gate: str  # the threshold in words ('' when not gated)


@dataclasses.dataclass
class Segment:
  """One user segment's share of the eval split and its top-k accuracy by k."""
  name: str
  examples: int
  top_k: Dict[int, float]


@dataclasses.dataclass
class TensorSpec:
  name: str
  dtype: str
  shape: str  # '[-1, 20]'


@dataclasses.dataclass
class Signature:
  name: str
  inputs: List[TensorSpec]
  outputs: List[TensorSpec]


@dataclasses.dataclass
class Artifact:
  role: str  # what the card uses it for
  type_name: str
  id: int
  uri: str
  producer: str


@dataclasses.dataclass
class CardFacts:
  """model_name/version: as served. training_curve: member -> tag -> value per epoch
  ('loss', 'validation catalogue_loss', 'validation top-10 accuracy', ...)."""
  model_name: str
  version: str
  pushed_to: str
  kind: str
  summary: str
  config: Dict[str, Any]
  data_settings: Dict[str, str]  # setting -> why the data chose it (components/settings_gen.py)
  data_profile: str  # the training split's size, in words
  vocabulary_sizes: Dict[str, int]
  training_data: str
  blessed: bool
  failed_thresholds: List[str]
  metrics: List[Metric]
  top_k: List[Tuple[int, float, Optional[float]]]  # (k, accuracy, baseline's accuracy)
  segments: List[Segment]
  training_curve: Dict[str, Dict[str, List[float]]]
  signatures: List[Signature]
  lineage: List[Artifact]
  execution_id: str
  pipeline_run_id: str


def _bound_text(threshold: tfma.MetricThreshold) -> str:
  """'>= 0.3, and at most 0 worse than the baseline' from a TFMA threshold."""
  parts = []
  value = threshold.value_threshold
  if value.HasField('lower_bound'):
    parts.append(f'>= {value.lower_bound.value:g}')
  if value.HasField('upper_bound'):
    parts.append(f'<= {value.upper_bound.value:g}')
  change = threshold.change_threshold
  if change.HasField('absolute'):
    worse = abs(change.absolute.value)
    parts.append('no worse than the baseline' if worse < 1e-9 else
                 f'at most {worse:.4g} worse than the baseline')
  return ', and '.join(parts)


def gates(evaluation_uri: str) -> Dict[str, str]:
  """metric name -> its threshold in words, from the EvalConfig the Evaluator ran with."""
  eval_config = eval_config_writer.load_eval_run(evaluation_uri)[0]
  found = {}
  for spec in eval_config.metrics_specs:
    for metric in spec.metrics:
      name = re.search(r'"name": "([^"]+)"', metric.config)  # our configs name each metric
      thresholds = [metric.threshold] if metric.HasField('threshold') else []
      thresholds += [per_slice.threshold for per_slice in metric.per_slice_thresholds]
      if name and thresholds:
        found[name[1]] = '; '.join(_bound_text(threshold) for threshold in thresholds)
  return found


def metrics(evaluation_uri: str) -> Tuple[List[Metric], List[Tuple[int, float, Optional[float]]]]:
  """The evaluation's metrics (top-k accuracies by k first), and the top-k accuracy curve."""
  candidate = evaluation_metrics(evaluation_uri, 'candidate')
  baseline = evaluation_metrics(evaluation_uri, 'baseline')
  gated = gates(evaluation_uri)
  shown = {name: value for name, value in candidate.items()
           if name not in ('example_count', 'weighted_example_count')}
  top_k = sorted((int(match[1]), value, baseline.get(name)) for name, value in shown.items()
                 if (match := re.fullmatch(r'top_(\d+)_accuracy', name)))
  order = [f'top_{k}_accuracy' for k, _, _ in top_k] + sorted(
      name for name in shown if not re.fullmatch(r'top_(\d+)_accuracy', name))
  return [Metric(name, shown[name], baseline.get(name), gated.get(name, '')) for name in order
          ], top_k


def segments(evaluation_uri: str) -> List[Segment]:
  """The candidate's top-k accuracy per user segment (the Evaluator's slices), in order."""
  found = []
  by_slice = metrics_by_slice(evaluation_uri, 'candidate')
  # 'history 5-19' after 'history 1-4': by the first number in the name, then by name.
  for name in sorted(by_slice, key=lambda text: (int((re.findall(r'\d+', text) or [0])[0]),
                                                 text)):
    values = by_slice[name]
    if not name:  # the whole split
      continue
    top_k = dict(sorted((int(match[1]), value) for metric, value in values.items()
                        if (match := re.fullmatch(r'top_(\d+)_accuracy', metric))))
    found.append(Segment(name, int(values.get('example_count', 0)), top_k))
  return found


def _scalars(folder: str) -> Dict[str, List[float]]:
  """{tag: [value per epoch]} of the TensorBoard event files in one folder: the scalars (a
  profiler trace adds summaries of its own there, which are not)."""
  values: Dict[str, List[float]] = {}
  for path in sorted(glob.glob(os.path.join(folder, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        if array.dtype.kind in 'fiu' and array.size == 1:
          values.setdefault(value.tag, []).append(float(array))
  return values


def training_curve(model_run_uri: str) -> Dict[str, Dict[str, List[float]]]:
  """member -> {'loss': [...], 'validation catalogue_loss': [...], 'validation top-10 accuracy':
  ...}
  from the Trainer's TensorBoard logs (a folder per ensemble member)."""
  curves = {}
  for member in sorted(glob.glob(os.path.join(model_run_uri, 'member-*'))):
    curve = {}
    for split, prefix in (('train', ''), ('validation', 'validation ')):
      for tag, values in _scalars(os.path.join(member, split)).items():
        name = tag.replace('epoch_', '')
        match = re.fullmatch(r'top_(\d+)_accuracy', name)
        curve[prefix + (f'top-{match[1]} accuracy' if match else name)] = values
    curves[os.path.basename(member)] = curve
  return curves


def _shape(tensor_info) -> str:
  if tensor_info.tensor_shape.unknown_rank:
    return 'any'
  return '[' + ', '.join(str(dim.size) for dim in tensor_info.tensor_shape.dim) + ']'


def signatures(saved_model_dir: str) -> List[Signature]:
  """The serving signatures of a SavedModel (TF Serving's view: the SignatureDefs)."""
  meta_graph = _serving_meta_graph(saved_model_dir)
  found = []
  for name, signature_def in sorted(meta_graph.signature_def.items()):
    if name.startswith('__'):
      continue
    specs = [[TensorSpec(alias, tf.dtypes.as_dtype(info.dtype).name, _shape(info))
              for alias, info in sorted(tensors.items())]
             for tensors in (signature_def.inputs, signature_def.outputs)]
    found.append(Signature(name, *specs))
  return found


def _serving_meta_graph(saved_model_dir: str) -> meta_graph_pb2.MetaGraphDef:
  proto = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(saved_model_dir, 'saved_model.pb'), 'rb') as file:
    proto.ParseFromString(file.read())
  return next(graph for graph in proto.meta_graphs if 'serve' in graph.meta_info_def.tags)


def vocabulary_sizes(transform_graph_uri: str) -> Dict[str, int]:
  output = tft.TFTransformOutput(transform_graph_uri)
  sizes = {}
  for name in f.VOCABULARIES:
    try:
      sizes[name] = output.vocabulary_size_by_name(name)
    except (ValueError, tf.errors.NotFoundError):  # a vocabulary this kind does not build
      continue
  return sizes


def shown_config(config: Dict[str, Any]) -> Dict[str, Any]:
  return {name: config[name] for name in SHOWN_CONFIG if name in config}
