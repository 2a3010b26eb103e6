"""Model hyper-parameters: one dataclass, carried to the Trainer as its custom_config.

Each field carries its one-line help (`documented`): `python -m pipeline run` makes a flag of
every field from it, so the flags, their help and their defaults cannot drift from the config.
"""
import dataclasses
from typing import Any, Dict, Tuple

from components import features as f
from components.model import distribution, kinds

# The model kinds (components/model/kinds.py), by name: retrieval, multitask, sequential.
MODEL_KINDS = tuple(kinds.KINDS)
INDEX_KINDS = ('scann', 'brute-force')
# What the retrieval softmax ranks each label against: the batch's other movies (scales to any
# catalogue), or every movie in the catalogue (a full softmax: exact, for catalogues of
# thousands).
NEGATIVES = ('in-batch', 'catalogue')
OPTIMIZERS = ('adagrad', 'adam')
# How the sequential query tower reads the history (components/model/towers.py
# HISTORY_ENCODERS; docs/benchmarks.md compares them).
HISTORY_ENCODERS = ('gru', 'mean', 'attention')
# What a sequential training example teaches (components/model/recommender.py): its next movie
# from its whole context, or every movie of it from the movies before it (SASRec's objective).
TRAIN_POSITIONS = ('last', 'every')
# The Trainer's custom_config key beside ModelConfig.to_dict()'s: the splits it trains on
# (TrainArgs.splits, which the Trainer's FnArgs give only as file patterns). The refit trains
# on train and eval, and every-position training then reads the windows of both
# (features.WINDOW_END_OF_SPLITS).
TRAIN_SPLITS_KEY = 'train_splits'
# The Refit's custom_config key: true when the Trainer continues its base model (the gated
# one) for refit_epochs on every split, with no validation split to stop on.
REFIT_KEY = 'refit'
# Where the Refit starts (components/trainer.py): the gated model's weights, or fresh ones.
REFIT_STARTS = ('gated', 'scratch')
# The validation metric early stopping watches (epoch_metrics.CatalogueTopK's) and its k.
EARLY_STOPPING_K = 10
# Beside a trained model's SavedModels (components/trainer.py): a JSON list, one entry per
# ensemble member, of what its fit did ({'epochs': run, 'loss': each epoch's last batch's,
# 'best_epoch': kept, 'val_top_10_accuracy': its figure}).
FIT_FILE = 'fit.json'
# Where the Trainer's TensorBoard profiler trace goes (profile_steps), under its ModelRun.
PROFILE_DIR = 'member-0/plugins/profile'

# What ModelConfig.tuned sets per kind on top of the dataclass defaults (each kind's `tuned`):
# the settings that reached the quality targets on MovieLens (docs/benchmarks.md says what
# each bought).
TUNED = {name: dict(kind.tuned) for name, kind in kinds.KINDS.items()}
# The fields some kind tunes: the CLI leaves them unset unless given (each needs a flag).
TUNED_FIELDS = tuple(dict.fromkeys(name for values in TUNED.values() for name in values))
# The fields some kind may set from the data (each kind's `derived`, components/model/
# data_settings.py): the CLI leaves them unset unless given, and names the given ones in
# ModelConfig.fixed so that the data never overrides them.
DERIVED_FIELDS = tuple(dict.fromkeys(name for kind in kinds.KINDS.values()
                                     for name in kind.derived))


def documented(default: Any, help: str,  # pylint: disable=redefined-builtin
               **cli: Any) -> Any:
  """A dataclass field with its default and one-line help, which is also its CLI flag's.

  cli: how pipeline/cli.py makes the flag, when not from the name and type alone: `flag` (the
  option string instead of --<name>), `choices`, `metavar`. A boolean field is a switch:
  --<name> turns on one that is off by default, --no-<name without use_> turns off one that
  is on.
  """
  return dataclasses.field(default=default, metadata={'help': help, **cli})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What the trainer builds and how it trains it.

  The field defaults are generic; ModelConfig.tuned(kind) adds each kind's tuned settings, and
  is what the CLI and the Kubeflow runner start from.
  """
  kind: str = documented(
      kinds.DEFAULT, f'model kind: {kinds.described()}', flag='--model', choices=MODEL_KINDS)
  embedding_dim: int = documented(64, 'width of every embedding table in the towers')
  # Empty: no dense layers (needs a single embedding per tower of equal size).
  layer_sizes: Tuple[int, ...] = documented(
      (64,), 'dense layers on each tower, comma-separated; the last is the embedding size')
  use_timestamps: bool = documented(
      False, 'timestamp buckets and the z-scored timestamp in the query tower')
  use_title: bool = documented(True, 'the title-token embedding in the candidate tower')
  use_genres: bool = documented(True, 'the genre embedding in the candidate tower')
  # With a validation split (the pipeline's --valid-percent) a maximum: training stops once the
  # validation top-10 accuracy has not risen for early_stopping_patience epochs, and keeps the
  # weights of its best epoch.
  epochs: int = documented(10, 'most passes over the training split')
  early_stopping_patience: int = documented(
      3, "stop training once the validation split's top-10 accuracy has not risen for this "
      'many epochs, and keep the best epoch\'s weights (0: train every epoch)')
  # components/model/warm_start.py; the pipeline's --warm-start gives the Trainer the model.
  warm_start_epochs: int = documented(
      3, 'most passes over the training split when starting from a previous model '
      '(--warm-start)')
  # The Refit continues the gated model's weights on every split (pipeline/pipeline.py):
  # the newest ratings, which the gated model never trained on, at the cost of a few epochs
  # instead of a second training from scratch.
  refit_from: str = documented(
      'gated', "where the refit starts: the gated model's weights, continued for "
      "--refit-epochs, or fresh weights trained for as many epochs as the gated model kept "
      '(its best epoch)', choices=REFIT_STARTS)
  refit_epochs: int = documented(
      5, "passes of the refit over train + valid + eval when it continues the gated model's "
      'weights (--refit-from gated)')
  batch_size: int = documented(1024, 'training examples per step')
  learning_rate: float = documented(0.05, "the towers' optimizer's learning rate")
  optimizer: str = documented('adagrad', "the towers' optimizer", choices=OPTIMIZERS)
  negatives: str = documented(
      'in-batch', "what the retrieval softmax ranks each label against: the batch's other "
      'movies, or the whole catalogue (up to --max-catalogue-negatives movies)',
      choices=NEGATIVES)
  # A catalogue-negatives step runs the candidate tower over every movie: 9 ms a step of 1,024
  # at 1,000 movies, 25 at 4,000, 94 at 16,000, 359 at 64,000, against 13-15 in-batch (2 cores,
  # benchmarks/negatives.py). Past about 5,000 movies it costs over twice an in-batch step,
  # and already at ml-1m's 3,706 the full softmax gained nothing on the validation replay
  # (docs/benchmarks.md): beyond this size the batch's movies with the logQ correction train.
  max_catalogue_negatives: int = documented(
      5_000, "catalogues of more movies than this train on in-batch negatives with the logQ "
      'correction even with --negatives catalogue (a full softmax step grows with the '
      'catalogue)')
  # Without it the model learns to push popular movies down. (No effect with catalogue
  # negatives: every movie is a negative once per example.)
  sampling_correction: bool = documented(
      True, 'the correction of in-batch negatives for how often each movie is sampled (logQ)')
  temperature: float = documented(1.0, 'divides the retrieval logits')
  # A user's embedding cannot lean on a few coordinates to fit their training movies.
  query_dropout: float = documented(
      0.0, "dropout on the query tower's input to its dense layers, in training")
  # components/model/ensemble.py: averaging out each run's noise lifts the top of the list,
  # for n times the training time.
  ensemble_size: int = documented(
      1, 'train the model this many times, on seeds seed, seed + 1, ..., and serve the sum of '
      'their scores')
  # Added to the (batch-summed) retrieval loss.
  embedding_l2: float = documented(0.0, 'L2 penalty on every embedding table')
  timestamp_buckets: int = documented(
      1000, 'quantile buckets of the timestamp, when the query tower reads it')
  top_k: int = documented(100, 'results per query in the exported model')
  index: str = documented(
      'scann', 'serving index: scann, or brute-force for stock TF Serving', choices=INDEX_KINDS)
  max_excluded: int = documented(
      100, 'most movie ids one request of the serving_exclude signature may exclude')
  # The fallback ranking is stored in the model (components/model/export.py); its rows answer
  # with strategy 'popular' and their movies' rating counts in the window as scores.
  fallback_days: int = documented(
      30, 'serving: a query the model cannot answer (a user id not in the training data, a '
      'history with no known movie) gets the movies most rated in the last this many days of '
      'the training data')
  # Their history is in the model.
  exclude_seen: bool = documented(False, "serving never returns a known user's training movies")
  # multitask: the loss is retrieval_weight * retrieval loss + rating_weight * squared rating
  # error, both summed over the batch.
  retrieval_weight: float = documented(1.0, 'multitask: weight of the retrieval loss')
  rating_weight: float = documented(1.0, 'multitask: weight of the rating loss')
  rating_layer_sizes: Tuple[int, ...] = documented(
      (256, 64), "multitask: the rating head's hidden layers, comma-separated")
  rating_learning_rate: float = documented(
      0.001, "multitask: the learning rate of the rating head's own optimizer (Adam)")
  max_context_length: int = documented(
      10, 'sequential: most recent movies the query tower reads (older ones are dropped)')
  history_encoder: str = documented(
      'gru', 'sequential: how the query tower reads those movies: a GRU, the mean of their '
      'embeddings, or causal self-attention with learned positions (SASRec)',
      choices=HISTORY_ENCODERS)
  # An id not in the training data reads the out-of-vocabulary row, which training teaches
  # by hiding user_id_dropout of the ids: a new user is the common case, not an error.
  use_user_id: bool = documented(
      False, "sequential: the query adds the user id's embedding to the history's (the "
      'serving signature then takes user_id too)')
  user_id_dropout: float = documented(
      0.5, 'sequential, with --use-user-id: share of training examples whose user id is '
      'hidden (read as unknown), so the model learns to answer new users')
  # Each window end's context and next movie (components/timelines.py) hold max_context_length
  # + 1 movies, so one pass of the encoder trains max_context_length targets: the same compute
  # buys longer histories and more epochs. batch_size then counts windows.
  train_positions: str = documented(
      'last', "sequential: what each training example teaches: its next movie from its whole "
      "context ('last'), or every movie of its context and its next movie from the movies "
      "before it ('every', SASRec's objective; it trains on the examples that end a window, "
      'each rating once an epoch, against the whole catalogue)', choices=TRAIN_POSITIONS)
  attention_blocks: int = documented(2, 'sequential, attention encoder: self-attention blocks')
  attention_heads: int = documented(1, 'sequential, attention encoder: heads per block')
  attention_dropout: float = documented(
      0.2, 'sequential, attention encoder: dropout on the inputs, attention weights and '
      'feed-forward outputs, in training')
  seed: int = documented(
      42, 'seed of the starting weights and the order of the batches')
  # TensorBoard's profiler (its Profile tab: each op's time, the input pipeline's share).
  profile_steps: int = documented(
      0, "trace this many training steps of the first model (from its second step) with "
      "TensorBoard's profiler, into the Trainer's logs (<ModelRun>/" + PROFILE_DIR + '); 0: none')
  # components/model/distribution.py; the workers themselves come from TF_CONFIG (the Kubeflow
  # runner's --trainer-workers, docs/kubeflow.md). batch_size stays the examples of one step,
  # all workers together.
  distribution: str = documented(
      distribution.DEFAULT, f'how the Trainer trains: {distribution.described()}',
      choices=tuple(distribution.DISTRIBUTIONS))
  # A property of the data, not a flag: the CLI sets it from the raw files' format
  # (components/ingest/movielens.py RATING_SCALE_OF_FORMAT); multitask clips to it.
  rating_scale: str = 'whole-stars'
  # Not a flag: the fields the user chose (the CLI's given model flags), which settings
  # derived from the data never replace (components/model/data_settings.py).
  fixed: Tuple[str, ...] = ()

  def __post_init__(self):
    kinds.of(self.kind)  # an unknown kind fails, naming the known ones
    names = {field.name for field in dataclasses.fields(self)}
    unknown = sorted(set(self.fixed) - names)
    if unknown:
      raise ValueError(f'fixed names no ModelConfig field: {", ".join(map(repr, unknown))}')
    distribution.of(self.distribution)  # so does an unknown distribution
    if self.retrieval_weight < 0 or self.rating_weight < 0:
      raise ValueError('loss weights must be >= 0, got retrieval_weight '
                       f'{self.retrieval_weight}, rating_weight {self.rating_weight}')
    if self.negatives not in NEGATIVES:
      raise ValueError(f'negatives {self.negatives!r} is not one of {NEGATIVES}')
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'optimizer {self.optimizer!r} is not one of {OPTIMIZERS}')
    if not 0 <= self.query_dropout < 1:
      raise ValueError(f'query_dropout must be in [0, 1), got {self.query_dropout}')
    if self.history_encoder not in HISTORY_ENCODERS:
      raise ValueError(f'history_encoder {self.history_encoder!r} is not one of '
                       f'{HISTORY_ENCODERS}')
    if self.train_positions not in TRAIN_POSITIONS:
      raise ValueError(f'train_positions {self.train_positions!r} is not one of '
                       f'{TRAIN_POSITIONS}')
    if self.train_positions == 'every' and not self.model_kind.timelines:
      raise ValueError(f"train_positions 'every' needs the timeline examples of a sequential "
                       f'model; model {self.kind!r} trains on single ratings')
    if not 0 <= self.user_id_dropout < 1:
      raise ValueError(f'user_id_dropout must be in [0, 1), got {self.user_id_dropout}')
    if not 0 <= self.attention_dropout < 1:
      raise ValueError(f'attention_dropout must be in [0, 1), got {self.attention_dropout}')
    if self.rating_scale not in f.RATING_SCALES:
      raise ValueError(f'rating_scale {self.rating_scale!r} is not one of '
                       f'{tuple(f.RATING_SCALES)}')
    if self.index not in INDEX_KINDS:
      raise ValueError(f'index {self.index!r} is not one of {INDEX_KINDS}')
    if self.refit_from not in REFIT_STARTS:
      raise ValueError(f'refit_from {self.refit_from!r} is not one of {REFIT_STARTS}')
    if self.profile_steps < 0:
      raise ValueError(f'profile_steps must be >= 0 (0: no trace), got {self.profile_steps}')
    if self.early_stopping_patience < 0:
      raise ValueError('early_stopping_patience must be >= 0 (0: no early stopping), got '
                       f'{self.early_stopping_patience}')
    for name in ('embedding_dim', 'epochs', 'warm_start_epochs', 'refit_epochs', 'batch_size',
                 'top_k',
                 'timestamp_buckets', 'max_excluded', 'max_context_length', 'ensemble_size', 'fallback_days',
                 'max_catalogue_negatives',
                 'attention_blocks', 'attention_heads'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')

  @classmethod
  def tuned(cls, kind: str = kinds.DEFAULT, **overrides) -> 'ModelConfig':
    """The kind's tuned defaults (its `tuned`), then the overrides."""
    return cls(kind=kind, **{**kinds.of(kind).tuned, **overrides})

  @property
  def model_kind(self) -> kinds.ModelKind:
    """The class of `kind` (components/model/kinds.py): its towers, export module, gate."""
    return kinds.of(self.kind)

  def to_dict(self) -> Dict[str, Any]:
    """JSON-friendly form for the Trainer's custom_config."""
    return {**dataclasses.asdict(self), 'layer_sizes': list(self.layer_sizes),
            'rating_layer_sizes': list(self.rating_layer_sizes), 'fixed': list(self.fixed)}

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> 'ModelConfig':
    """The config to_dict wrote. A key it does not know fails, naming it: dropped, a field
    renamed on one side of the TFX boundary would silently train with its default."""
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
      raise ValueError(
          f'ModelConfig has no field {", ".join(map(repr, unknown))} (known: {", ".join(known)}):'
          " the Trainer's custom_config must be ModelConfig.to_dict() of the same code: "
          'compile the pipeline again (make kubeflow-compile) if its image runs another version')
    values = dict(values)
    for name in ('layer_sizes', 'rating_layer_sizes'):
      if name in values:
        values[name] = tuple(int(size) for size in values[name])
    if 'fixed' in values:
      values['fixed'] = tuple(values['fixed'])
    return cls(**values)
