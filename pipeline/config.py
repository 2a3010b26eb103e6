"""Every knob of the pipeline in one dataclass; create_pipeline(config) reads nothing else."""
import dataclasses
import os
from typing import Optional, Tuple

from components.model.config import ModelConfig, documented

_SCHEMAS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'components', 'schema')
CURATED_SCHEMA = os.path.join(_SCHEMAS, 'schema.pbtxt')
# The sequential model's timeline examples (components/timelines.py).
TIMELINE_SCHEMA = os.path.join(_SCHEMAS, 'timelines.pbtxt')
SPLITS = ('random', 'time')
EVAL_TOP_KS = (10, 50, 100)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Where data comes from and goes, how it is split, trained, gated and pushed.

  All outputs live under `workdir` (a local folder, or gs://... / s3://... on a cluster):
  pipeline_root/ (artifacts), metadata.sqlite (MLMD for local runs, which also makes unchanged
  re-runs reuse cached outputs) and serving_models/<model name>/<version>/ (or under
  `serving_models_root`).
  """
  data_dir: str  # a raw MovieLens folder (ml-100k or ml-1m format)
  workdir: str = documented(
      'workdir', 'artifacts (pipeline_root/), MLMD (metadata.sqlite) and serving_models/ go here',
      metavar='DIR')
  pipeline_name: str = 'movielens-recommender'
  model: ModelConfig = ModelConfig()
  split: str = documented(
      'random', 'random: a stable hash of each rating; time: the latest ratings are the eval '
      'split', choices=SPLITS)
  eval_percent: int = documented(20, 'share of ratings in the eval split')
  schema_file: Optional[str] = CURATED_SCHEMA  # None: infer the schema with SchemaGen
  timeline_schema_file: str = TIMELINE_SCHEMA  # sequential: the timeline examples' schema
  eval_top_ks: Tuple[int, ...] = EVAL_TOP_KS
  gate_k: int = documented(100, 'the top-k accuracy that decides the blessing',
                           choices=EVAL_TOP_KS)
  min_accuracy: float = documented(0.1, 'absolute floor on the top-gate_k accuracy')
  max_regression: float = documented(
      0.0, 'allowed drop against the latest blessed model')
  # multitask: also gate on the eval ratings' RMSE (an upper bound, and no regression).
  max_rmse: float = documented(1.0, "multitask: upper bound on the eval ratings' RMSE")
  # sequential: how TimelineGen builds (context -> next movie) examples from the ratings.
  min_rating: float = documented(
      2.0, 'sequential: ratings below are not watched-and-liked, and are left out of timelines')
  min_timeline_length: int = documented(
      3, 'sequential: users with fewer kept ratings are left out')
  timeline_eval_percent: int = documented(
      10, 'sequential: share of timeline examples in the eval split')
  model_name: Optional[str] = documented(
      None, 'serving model name, the folder under serving_models/ (default: the model kind)',
      metavar='NAME')
  serving_models_root: Optional[str] = None  # defaults to <workdir>/serving_models
  beam_args: Tuple[str, ...] = ()
  enable_cache: bool = True
  # Local runs keep MLMD in <workdir>/metadata.sqlite; Kubeflow brings its own MLMD.
  local_metadata: bool = True

  def __post_init__(self):
    if self.split not in SPLITS:
      raise ValueError(f'split {self.split!r} is not one of {SPLITS}')
    if not 0 < self.eval_percent < 100:
      raise ValueError(f'eval_percent must be in 1..99, got {self.eval_percent}')
    if not 0 < self.timeline_eval_percent < 100:
      raise ValueError('timeline_eval_percent must be in 1..99, got '
                       f'{self.timeline_eval_percent}')
    if self.gate_k not in self.eval_top_ks:
      raise ValueError(f'gate_k {self.gate_k} must be one of eval_top_ks {self.eval_top_ks}')

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.workdir, 'pipeline_root')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.workdir, 'metadata.sqlite')

  @property
  def serving_model_name(self) -> str:
    return self.model_name or self.model.kind

  @property
  def serving_model_dir(self) -> str:
    """The model base path TF Serving polls: versions appear as numbered folders in it."""
    root = self.serving_models_root or os.path.join(self.workdir, 'serving_models')
    return os.path.join(root, self.serving_model_name)
