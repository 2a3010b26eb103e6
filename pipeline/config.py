"""Every knob of the pipeline in one dataclass; create_pipeline(config) reads nothing else."""
import dataclasses
import os
from typing import Dict, Optional, Tuple

from components import features as f
from components.model.config import ModelConfig, documented

_SCHEMAS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'components', 'schema')
CURATED_SCHEMA = os.path.join(_SCHEMAS, 'schema.pbtxt')
# The sequential model's timeline examples (components/timelines.py).
TIMELINE_SCHEMA = os.path.join(_SCHEMAS, 'timelines.pbtxt')
SPLITS = ('time', 'random', 'last')
# What a drift of the data from the previous run's beyond the thresholds does
# (components/validation.py DriftGate).
DRIFT_ACTIONS = ('stop', 'warn', 'off')
# The resolver of the previous run's statistics (pipeline.py). On a first run there are none:
# TFX's LatestArtifactStrategy (the one the Kubeflow compiler takes) then logs an input
# resolution error, which the CLI leaves out, and the DistributionValidator runs without a
# baseline (components/validation.py).
PREVIOUS_STATISTICS_RESOLVER = 'previous_statistics_resolver'
# With span folders, the resolver of the spans a run trains on (pipeline.py _span_window).
SPAN_WINDOW_RESOLVER = 'span_window_resolver'
EVAL_TOP_KS = (10, 50, 100)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Where data comes from and goes, how it is split, trained, gated and pushed.

  All outputs live under `workdir` (a local folder, or gs://... / s3://... on a cluster):
  pipeline_root/ (artifacts), metadata.sqlite (MLMD for local runs, which also makes unchanged
  re-runs reuse cached outputs) and serving_models/<model name>/<version>/ (or under
  `serving_models_root`).
  """
  data_dir: str  # a raw MovieLens folder (ml-100k, ml-1m or CSV format)
  workdir: str = documented(
      'workdir', 'artifacts (pipeline_root/), MLMD (metadata.sqlite) and serving_models/ go here',
      metavar='DIR')
  pipeline_name: str = 'movielens-recommender'
  # The default kind with its tuned settings, as `pipeline run` starts from.
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig.tuned)
  # What the gate judges the model on. Timeline kinds (sequential) evaluate, for 'time', every
  # eval rating as the next movie after the history so far; for 'random', a hash of the
  # timeline examples (timeline_eval_percent); 'last' is theirs alone.
  split: str = documented(
      'time', 'time: the latest ratings (the future) are the eval split, as a deployed model '
      'meets them; random: a stable hash of each rating (the tutorials\' split); last: each '
      "user's last movie (leave-last-out; sequential only)", choices=SPLITS)
  eval_percent: int = documented(
      20, 'share of ratings in the eval split (time: the latest; random: by hash)')
  # Early stopping reads it (ModelConfig.early_stopping_patience): the gate's eval split stays
  # unseen by every choice made in training. The refit trains on it too.
  valid_percent: int = documented(
      10, 'share of ratings in the validation split that ends training early (time: the '
      'latest before the eval split; random: by hash; 0: no validation split, every model '
      'trains --epochs)')
  # TFX's DistributionValidator compares this run's statistics with the previous run's
  # (per split): the rating's histogram by Jensen-Shannon divergence, the ids' frequencies
  # by L-infinity distance (the largest change of one id's share).
  drift_action: str = documented(
      'stop', "what data drifted from the previous run's beyond the thresholds does: stop the "
      'run before training, warn (and go on), or off (no comparison)', choices=DRIFT_ACTIONS)
  max_rating_drift: float = documented(
      0.1, "Jensen-Shannon divergence of the rating histogram from the previous run's data")
  max_id_drift: float = documented(
      0.1, "L-infinity distance of the movie id and user id frequencies from the previous "
      "run's data")
  # The data dir holds span folders (<data dir>/span-<N>/, components/ingest/spans.py); the CLI
  # sets it from the folder. Each run ingests the newest span; the model trains on a window of
  # the spans ingested so far and is gated on the newest span's eval split.
  spans: bool = False
  train_spans: Optional[int] = documented(
      None, 'with span folders (<data dir>/span-<N>/): train on the newest N spans ingested '
      '(default: all of them)', metavar='N')
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
      2.0, 'sequential: ratings below are not watched-and-liked, and are left out of timelines '
      "(on the data's scale: 1-5 stars, or 0.5-5 in half stars for the CSV family)")
  min_timeline_length: int = documented(
      3, 'sequential: users with fewer kept ratings are left out')
  timeline_eval_percent: int = documented(
      10, 'sequential, --split random: share of timeline examples in the eval split')
  # With the time split the eval split is the newest ratings, the ones tomorrow's requests
  # resemble most: a model that never trained on them loses about a tenth of its replay HR@10
  # (docs/benchmarks.md). Refit gives the served model the gated settings and all the data.
  refit: bool = documented(
      True, 'after the gate, train the same model again on train + eval and push that one '
      '(under the gated model\'s blessing)')
  # Off by default: the resolved model is a Trainer input, so with it an unchanged re-run would
  # train again (from the model the previous run blessed) instead of reusing its cached model.
  warm_start: bool = documented(
      False, 'start the Trainer (and the refit) from the latest blessed model: its weights, '
      'each id table row by row by id (new users and movies get new rows), for '
      '--warm-start-epochs; from scratch while nothing is blessed')
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
    if not 0 <= self.valid_percent < 100 - self.eval_percent:
      raise ValueError(f'valid_percent must be in 0..{99 - self.eval_percent} (what eval_percent '
                       f'{self.eval_percent} leaves to train on, less one), got '
                       f'{self.valid_percent}')
    if not 0 < self.timeline_eval_percent < 100:
      raise ValueError('timeline_eval_percent must be in 1..99, got '
                       f'{self.timeline_eval_percent}')
    if self.split == 'last' and not self.model.model_kind.timelines:
      raise ValueError(f"split 'last' (leave-last-out) holds out each user's last movie of "
                       f'a timeline: a next-movie protocol, which model {self.model.kind!r} '
                       'does not train on; use --split time or random')
    if self.split == 'random' and self.model.train_positions == 'every':
      raise ValueError("train_positions 'every' trains on every movie of a window's context, "
                       "and the random split's eval movies sit inside training contexts: it "
                       "would train on them; use --train-positions last with --split random")
    if self.train_spans is not None and self.train_spans < 1:
      raise ValueError(f'train_spans must be at least 1, got {self.train_spans}')
    if self.drift_action not in DRIFT_ACTIONS:
      raise ValueError(f'drift_action {self.drift_action!r} is not one of {DRIFT_ACTIONS}')
    if not (0 < self.max_rating_drift <= 1 and 0 < self.max_id_drift <= 1):
      raise ValueError('max_rating_drift and max_id_drift must be in (0, 1], got '
                       f'{self.max_rating_drift} and {self.max_id_drift}')
    scale = f.RATING_SCALES[self.model.rating_scale]
    if not scale.minimum <= self.min_rating <= scale.maximum:
      raise ValueError(f'min_rating {self.min_rating} is off the data\'s rating scale '
                       f'({scale.name}: {scale.minimum:g} to {scale.maximum:g} stars)')
    if self.gate_k not in self.eval_top_ks:
      raise ValueError(f'gate_k {self.gate_k} must be one of eval_top_ks {self.eval_top_ks}')

  @property
  def split_percents(self) -> Dict[str, int]:
    """ExampleGen's splits and their shares of the ratings, in time order for the time split:
    train, valid (unless valid_percent is 0), eval."""
    percents = {'train': 100 - self.eval_percent - self.valid_percent,
                f.VALID_SPLIT: self.valid_percent, 'eval': self.eval_percent}
    return {name: percent for name, percent in percents.items() if percent}

  @property
  def trained_model(self) -> ModelConfig:
    """The model config the Trainers get: `model`, with no early stopping when there is no
    valid split (the eval split, which the gate judges, is never stopped on)."""
    if self.valid_percent:
      return self.model
    return dataclasses.replace(self.model, early_stopping_patience=0)

  @property
  def validation_split(self) -> str:
    """The split the Trainer validates on each epoch (and stops early on): valid, or eval
    when there is no valid split."""
    return f.VALID_SPLIT if self.valid_percent else 'eval'

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
  def serving_models_dir(self) -> str:
    """Where every model's folder is, and the rollout's models.config (serving/rollout.py)."""
    return self.serving_models_root or os.path.join(self.workdir, 'serving_models')

  @property
  def serving_model_dir(self) -> str:
    """The model base path TF Serving polls: versions appear as numbered folders in it."""
    return os.path.join(self.serving_models_dir, self.serving_model_name)
