"""Model hyper-parameters: one dataclass, carried to the Trainer as its custom_config."""
import dataclasses
from typing import Any, Dict, Tuple

# retrieval: user (+ context) -> movies. multitask: the same plus a rating head.
# sequential: the user's recent movies (a GRU over them) -> the next movie.
MODEL_KINDS = ('retrieval', 'multitask', 'sequential')
INDEX_KINDS = ('scann', 'brute-force')
# What the retrieval softmax ranks each label against: the batch's other movies (scales to any
# catalogue), or every movie in the catalogue (a full softmax: exact, for catalogues of
# thousands).
NEGATIVES = ('in-batch', 'catalogue')

# What ModelConfig.tuned sets per kind on top of the dataclass defaults: the settings that
# reached the quality targets on MovieLens (docs/benchmarks.md says what each bought).
TUNED = {
    'retrieval': {'epochs': 40, 'embedding_l2': 0.5, 'negatives': 'catalogue',
                  'temperature': 0.5, 'query_dropout': 0.4, 'ensemble_size': 3},
    'multitask': {'epochs': 20, 'embedding_l2': 1.0},
    'sequential': {},  # 10 epochs, no L2, in-batch negatives
}
# The fields some kind tunes: the CLI leaves them unset unless given (each needs a flag).
TUNED_FIELDS = tuple(dict.fromkeys(name for values in TUNED.values() for name in values))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What the trainer builds and how it trains it.

  The field defaults are generic; ModelConfig.tuned(kind) adds each kind's tuned settings, and
  is what the CLI and the Kubeflow runner start from.
  """
  kind: str = 'retrieval'
  embedding_dim: int = 64
  # Dense layers on top of each tower's concatenated embeddings; the last one is the output
  # size. Empty: no dense layers (needs a single embedding per tower of equal size).
  layer_sizes: Tuple[int, ...] = (64,)
  use_timestamps: bool = False  # timestamp bucket + z-score in the query tower
  use_title: bool = True  # title-token embedding in the candidate tower
  use_genres: bool = True  # genre embedding in the candidate tower
  epochs: int = 10
  batch_size: int = 1024
  learning_rate: float = 0.05
  optimizer: str = 'adagrad'
  negatives: str = 'in-batch'
  # Correct the in-batch softmax for how often each movie is sampled as a negative (logQ):
  # without it the model learns to push popular movies down. (No effect with catalogue
  # negatives: every movie is a negative once per example.)
  sampling_correction: bool = True
  temperature: float = 1.0  # divides the retrieval logits
  # Dropout on the query tower's input to its dense layers (training only): a user's
  # embedding cannot lean on a few coordinates to fit their training movies.
  query_dropout: float = 0.0
  # Train the model this many times, on seeds seed, seed + 1, ... (the starting weights and
  # the order of the batches), and serve the sum of their scores (components/model/
  # ensemble.py): averaging out each run's noise lifts the top of the list, for n times the
  # training time.
  ensemble_size: int = 1
  # L2 penalty on every embedding table, added to the (batch-summed) retrieval loss.
  embedding_l2: float = 0.0
  timestamp_buckets: int = 1000
  top_k: int = 100  # results per query in the exported model
  index: str = 'scann'  # serving index: 'scann' or 'brute-force' (stock TF Serving)
  # Most movies one request of the `serving_exclude` signature may exclude.
  max_excluded: int = 100
  # Serving never returns a known user's training movies (their history is in the model).
  exclude_seen: bool = False
  # multitask: the loss is retrieval_weight * retrieval loss + rating_weight * squared rating
  # error, both summed over the batch.
  retrieval_weight: float = 1.0
  rating_weight: float = 1.0
  rating_layer_sizes: Tuple[int, ...] = (256, 64)  # the rating head's hidden layers
  rating_learning_rate: float = 0.001  # the rating head's own optimizer: Adam
  # sequential: the most recent movies the query tower reads (older ones are dropped).
  max_context_length: int = 10
  seed: int = 42

  def __post_init__(self):
    if self.kind not in MODEL_KINDS:
      raise ValueError(f'model kind {self.kind!r} is not one of {MODEL_KINDS}')
    if self.retrieval_weight < 0 or self.rating_weight < 0:
      raise ValueError('loss weights must be >= 0, got retrieval_weight '
                       f'{self.retrieval_weight}, rating_weight {self.rating_weight}')
    if self.negatives not in NEGATIVES:
      raise ValueError(f'negatives {self.negatives!r} is not one of {NEGATIVES}')
    if not 0 <= self.query_dropout < 1:
      raise ValueError(f'query_dropout must be in [0, 1), got {self.query_dropout}')
    if self.index not in INDEX_KINDS:
      raise ValueError(f'index {self.index!r} is not one of {INDEX_KINDS}')
    for name in ('embedding_dim', 'epochs', 'batch_size', 'top_k', 'timestamp_buckets',
                 'max_excluded', 'max_context_length', 'ensemble_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')

  @classmethod
  def tuned(cls, kind: str = 'retrieval', **overrides) -> 'ModelConfig':
    """The kind's tuned defaults (TUNED), then the overrides (an unknown kind fails in
    __post_init__)."""
    return cls(kind=kind, **{**TUNED.get(kind, {}), **overrides})

  def to_dict(self) -> Dict[str, Any]:
    """JSON-friendly form for the Trainer's custom_config."""
    return {**dataclasses.asdict(self), 'layer_sizes': list(self.layer_sizes),
            'rating_layer_sizes': list(self.rating_layer_sizes)}

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> 'ModelConfig':
    known = {field.name for field in dataclasses.fields(cls)}
    values = {key: value for key, value in values.items() if key in known}
    for name in ('layer_sizes', 'rating_layer_sizes'):
      if name in values:
        values[name] = tuple(int(size) for size in values[name])
    return cls(**values)
