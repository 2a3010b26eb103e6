"""Model kinds: one class per kind, which knows its examples, query tower, export module and gate.

`ModelKind` is the contract; `Retrieval` (user -> movies), `Multitask(Retrieval)` (the same plus
a rating head) and `Sequential` (the recent movies -> the next one) are the variants, and `KINDS`
the registry that config.py's MODEL_KINDS and TUNED are read from. `ModelConfig.kind` stays a
string (the config crosses the TFX boundary as the Trainer's custom_config); `of(name)`, or
`ModelConfig.model_kind`, gives its class. A new kind is one new class here (plus its tower and
export module) and one entry in KINDS; no other file asks which kind it has.

The hooks, by caller (ModelKind documents each):
- pipeline/pipeline.py: `model_data`, the components between the validation gate and the
  Trainer (Transform over the ratings; sequential: TimelineGen and its ImportSchemaGen first,
  Transform over the timelines), and `gate`, the Evaluator's thresholds past top-k accuracy
  (multitask: max_rmse).
- pipeline/cli.py: `describe_gate`, those thresholds in words for the blessing line.
- components/trainer.py: `query_tower` (QueryTower, or ContextTower for sequential),
  `rating_head` (multitask's RatingHead) and `export_module` (UserRecommender,
  RatingRecommender, ContextRecommender in export.py).
- config.py, the CLI, benchmarks: `name`, `description`, `tuned`, `derived`, `timelines`.
- components/settings_gen.py: `data_settings`, the settings the training data's size calls
  for (components/model/data_settings.py).

One class, both sides of the pipeline. The model side is the Trainer's (it runs in its own
container and sees only the ModelConfig), so the classes live here, in components/, which may
import nothing above it. The pipeline-side hooks therefore take what they need as arguments:
the TFX channels they read and the pipeline's settings, read through the `PipelineSettings`
protocol below (pipeline/config.py's PipelineConfig satisfies it; it is never imported here),
and they build only components of components/ and TFX. TensorFlow, TFX and the towers are
imported inside the hooks that use them, so config.py, which imports this module, and with it
the CLI's --help, stay free of TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Protocol, Sequence, Tuple

from components import features as f  # names only: no TensorFlow

if TYPE_CHECKING:  # annotations only: these import TensorFlow, and config.py imports this module
  import tensorflow as tf
  import tensorflow_transform as tft
  from tfx import v1 as tfx
  from tfx.dsl.components.base.base_node import BaseNode

  from components.model.catalogue import Catalogue
  from components.model.config import ModelConfig
  from components.model.data_settings import DataProfile, Setting
  from components.model.export import RecommenderModule
  from components.model.recommender import RatingHead, RecommenderModel


class PipelineSettings(Protocol):
  """What the pipeline-side hooks read of the pipeline's config (pipeline/config.py
  PipelineConfig, whose fields document them)."""
  model: ModelConfig
  max_rmse: float
  min_rating: float
  min_timeline_length: int
  split: str
  timeline_eval_percent: int
  timeline_schema_file: str
  valid_percent: int


@dataclasses.dataclass(frozen=True)
class ModelData:
  """What a kind adds to the pipeline between the validation gate and the Trainer.

  components: in data-flow order, the Transform last.
  examples: the examples the model trains on and the Evaluator evaluates it on.
  transform: the Transform, whose outputs the Trainer reads.
  """
  components: Sequence[BaseNode]
  examples: tfx.dsl.Channel
  transform: tfx.components.Transform


class ModelKind:
  """The contract every kind fulfils; the subclasses are the kinds.

  Attributes:
    name: the `--model` value, ModelConfig.kind, and the default serving model name.
    description: what it recommends from what, for the --model help.
    tuned: ModelConfig fields this kind sets on top of the dataclass defaults (ModelConfig.tuned).
    derived: ModelConfig fields data_settings may set from the data.
    timelines: trains and is evaluated on TimelineGen's (recent movies -> next movie) examples
      rather than on the ratings.
    preprocessing_fn: the Transform's, as a dotted path.
  """
  name: str
  description: str
  tuned: Mapping[str, Any] = {}
  derived: Tuple[str, ...] = ()
  timelines: bool = False
  preprocessing_fn: str

  @property
  def examples_component(self) -> str:
    """The id of the component whose Examples the model trains and is evaluated on."""
    return 'TimelineGen' if self.timelines else 'FileBasedExampleGen'

  @property
  def example_unit(self) -> str:
    """What one training example is, in words."""
    return 'timeline examples' if self.timelines else 'ratings'

  # Pipeline side (pipeline/pipeline.py, pipeline/cli.py).
  def model_data(self, ratings: tfx.dsl.Channel, schema: tfx.dsl.Channel, after: BaseNode,
                 settings: PipelineSettings, data_settings: tfx.dsl.Channel) -> ModelData:
    """The components that make the model's examples from ExampleGen's ratings (with their
    schema) and transform them; the first of them runs `after` the validation gate.
    data_settings: SettingsGen's HyperParameters, for the settings that shape the examples
    (sequential: the windows' max_context_length)."""
    raise NotImplementedError

  def transform(self, examples: tfx.dsl.Channel, schema: tfx.dsl.Channel,
                settings: PipelineSettings) -> tfx.components.Transform:
    """The Transform of the model's examples: vocabularies, timestamp buckets, z-scores.

    Without Transform's own statistics of its input and output (TFDV over every example
    twice, 15% of the stage's time at 1M ratings, read by nothing here: StatisticsGen and
    ExampleValidator check the raw ratings before this; the sequential model's timeline
    examples are built from those checked ratings by TimelineGen, and their schema is the
    curated components/schema/timelines.pbtxt)."""
    from tfx import v1 as tfx
    return tfx.components.Transform(examples=examples, schema=schema,
                                    preprocessing_fn=self.preprocessing_fn,
                                    custom_config=self.transform_config(settings.model),
                                    disable_statistics=True)

  def transform_config(self, config: ModelConfig) -> Optional[Dict[str, Any]]:
    """The preprocessing_fn's custom_config."""
    return None

  def gate(self, settings: PipelineSettings) -> Dict[str, Any]:
    """The Evaluator's thresholds past top-k accuracy: components/eval_config.py
    make_eval_config's keyword arguments."""
    return {}

  def describe_gate(self, settings: PipelineSettings) -> str:
    """Those thresholds in words, appended to the CLI's 'Blessed: top_k_accuracy >= x'."""
    return ''

  def data_settings(self, profile: DataProfile, config: ModelConfig) -> Dict[str, Setting]:
    """The `derived` fields' values for data of this profile (the training split's size),
    each with its reason. Run by SettingsGen; the user's own choices are removed after
    (data_settings.derive)."""
    return {}

  # Model side (components/trainer.py).
  def query_tower(self, config: ModelConfig,
                  tft_output: tft.TFTransformOutput) -> tf.keras.Model:
    """The query tower, sized from the transform's vocabularies."""
    raise NotImplementedError

  def rating_head(self, config: ModelConfig, tft_output: tft.TFTransformOutput,
                  catalogue: Catalogue) -> Optional[RatingHead]:
    """The head trained beside the retrieval task, if any."""
    return None

  def export_module(self, model: RecommenderModel, *args: Any) -> RecommenderModule:
    """The exported module of a trained model (components/model/export.py).

    args: RecommenderModule's after the query tower: tft_output, catalogue,
      candidate_embeddings, config, index_kind.
    """
    raise NotImplementedError


class Retrieval(ModelKind):
  """Users -> movies: a user-id query tower (+ timestamp features), trained on the ratings."""
  name = 'retrieval'
  description = 'user -> movies'
  # What reached the quality targets on MovieLens (docs/benchmarks.md says what each bought).
  tuned = {'epochs': 40, 'embedding_l2': 0.5, 'negatives': 'catalogue', 'temperature': 0.5,
           'query_dropout': 0.4, 'ensemble_size': 3}
  preprocessing_fn = 'components.transform.preprocessing_fn'

  def model_data(self, ratings, schema, after, settings, data_settings):
    transform = self.transform(ratings, schema, settings)
    transform.add_upstream_node(after)
    return ModelData(components=[transform], examples=ratings, transform=transform)

  def transform_config(self, config):
    return {'timestamp_buckets': config.timestamp_buckets}

  def query_tower(self, config, tft_output):
    from components.model.towers import QueryTower
    return QueryTower(tft_output.vocabulary_size_by_name(f.USER_ID_VOCAB), config,
                      name='query_tower')

  def export_module(self, model, *args):
    from components.model.export import UserRecommender
    return UserRecommender(model.query_tower, *args)


class Multitask(Retrieval):
  """Retrieval plus a rating head; gated on the eval ratings' RMSE too."""
  name = 'multitask'
  description = 'retrieval plus a rating head'
  tuned = {'epochs': 20, 'embedding_l2': 1.0}

  def gate(self, settings):
    return {'max_rmse': settings.max_rmse}

  def describe_gate(self, settings):
    from components.eval_config import RMSE_METRIC
    return f' and {RMSE_METRIC} <= {settings.max_rmse}'

  def rating_head(self, config, tft_output, catalogue):
    from components.model.biases import fit_biases
    from components.model.recommender import RatingHead
    from components.transform import NUM_OOV_BUCKETS
    vocab_size = tft_output.vocabulary_size_by_name
    mean, user_bias, movie_bias = fit_biases(
        *catalogue.ratings, num_users=vocab_size(f.USER_ID_VOCAB) + NUM_OOV_BUCKETS,
        num_movies=vocab_size(f.MOVIE_ID_VOCAB) + NUM_OOV_BUCKETS)
    return RatingHead(config.rating_layer_sizes, mean, user_bias, movie_bias,
                      name='rating_head')

  def export_module(self, model, *args):
    from components.model.export import RatingRecommender
    return RatingRecommender(model.query_tower, *args, rating_head=model.rating_head)


# TimelineGen's eval_examples rule for each PipelineConfig.split.
TIMELINE_EVAL_RULES = {'time': 'future', 'random': 'hash', 'last': 'last'}


class Sequential(ModelKind):
  """The recent movies -> the next one: a GRU over the user's last movies, trained on
  TimelineGen's timeline examples."""
  name = 'sequential'
  description = 'recent movies -> the next one'
  # Picked on a validation replay of ml-100k (docs/benchmarks.md, "Tuning the sequential
  # model on the replay", and "One model, every position, stopped early"): one model trained
  # at every position of its windows (64 a step), at most 100 epochs, stopped early.
  tuned = {'negatives': 'catalogue', 'max_context_length': 20, 'embedding_l2': 0.5,
           'query_dropout': 0.3, 'train_positions': 'every', 'batch_size': 64, 'epochs': 100}
  derived = ('train_positions', 'negatives', 'history_encoder', 'max_context_length',
             'optimizer', 'learning_rate', 'embedding_l2', 'query_dropout', 'batch_size')
  # From this many training ratings a movie, the data is dense enough for self-attention
  # over long histories without regularisation: MovieLens 100K's train split has 35-40 (the
  # GRU over 20 movies, L2 0.5 and dropout 0.3 won there; attention over 200 lost 0.03
  # HR@10), MovieLens 1M's 95-135 (attention over 200, Adam, no L2 or dropout won there).
  # Between the two, untested (docs/benchmarks.md, "Settings chosen for the data").
  DENSE_RATINGS_PER_MOVIE = 75
  timelines = True
  preprocessing_fn = 'components.transform.timeline_preprocessing_fn'

  def model_data(self, ratings, schema, after, settings, data_settings):
    from tfx import v1 as tfx

    from components.timelines import TimelineGen
    # Turns every user's ratings into (recent movies -> next movie) examples; evaluated: the
    # future ratings (time split), each user's last (last), or a hash of them (random).
    timeline_gen = TimelineGen(
        examples=ratings, min_rating=settings.min_rating,
        min_timeline_length=settings.min_timeline_length,
        max_context_length=settings.model.max_context_length,
        eval_percent=settings.timeline_eval_percent,
        eval_examples=TIMELINE_EVAL_RULES[settings.split],
        valid_percent=settings.valid_percent,
        # The windows' length may be the data's choice (200 movies for dense data).
        data_settings=data_settings)
    timeline_gen.add_upstream_node(after)
    from components.curated_schema import CuratedSchemaGen
    timeline_schema_gen = CuratedSchemaGen(  # pylint: disable=no-value-for-parameter
        schema_file=settings.timeline_schema_file,
        rating_scale=settings.model.rating_scale).with_id('timeline_schema_gen')
    # The model trains and is evaluated on the timelines instead of the ratings.
    timelines = timeline_gen.outputs['timelines']
    transform = self.transform(timelines, timeline_schema_gen.outputs['schema'], settings)
    return ModelData(components=[timeline_gen, timeline_schema_gen, transform],
                     examples=timelines, transform=transform)

  def data_settings(self, profile, config):
    from components.model.data_settings import Setting, open_to_data
    settings = {}
    if profile.movies > config.max_catalogue_negatives:
      # Every position is ranked against the whole catalogue; past max_catalogue_negatives the
      # Trainer would refuse it. The next movie alone trains on in-batch negatives, which
      # need large batches.
      why = (f'{profile.movies:,} movies, more than --max-catalogue-negatives '
             f'{config.max_catalogue_negatives:,}: the next movie alone, against in-batch '
             'negatives')
      settings.update(train_positions=Setting('last', why), negatives=Setting('in-batch', why),
                      batch_size=Setting(1024, why), history_encoder=Setting('gru', why),
                      max_context_length=Setting(20, why))
    dense = profile.ratings_per_movie >= self.DENSE_RATINGS_PER_MOVIE
    density = (f'{profile.ratings_per_movie:.0f} training ratings a movie, '
               f'{"at least" if dense else "fewer than"} {self.DENSE_RATINGS_PER_MOVIE}')
    if dense:
      settings.update(embedding_l2=Setting(0.0, density), query_dropout=Setting(0.0, density))
      # SASRec's setting, as on MovieLens 1M; all of it or none (a GRU over 200 movies is
      # untested and slow).
      if 'train_positions' not in settings and open_to_data(config, 'history_encoder'):
        settings.update(history_encoder=Setting('attention', density),
                        max_context_length=Setting(200, density),
                        optimizer=Setting('adam', density),
                        learning_rate=Setting(0.001, density),
                        batch_size=Setting(32, density))
    else:  # the tuned settings, as on MovieLens 100K
      settings.update(embedding_l2=Setting(self.tuned['embedding_l2'], density),
                      query_dropout=Setting(self.tuned['query_dropout'], density))
      if 'train_positions' not in settings:
        settings.update(history_encoder=Setting('gru', density),
                        max_context_length=Setting(self.tuned['max_context_length'], density))
    return settings

  def query_tower(self, config, tft_output):
    from components.model.towers import ContextTower
    vocab_size = tft_output.vocabulary_size_by_name
    return ContextTower(vocab_size(f.MOVIE_ID_VOCAB), config,
                        num_user_ids=vocab_size(f.USER_ID_VOCAB) if config.use_user_id else 0,
                        name='query_tower')

  def export_module(self, model, *args):
    from components.model.export import ContextRecommender
    return ContextRecommender(model.query_tower, *args)


# The kind `pipeline run` trains without --model: the one that answers tomorrow's users, most of
# whom the training data never saw, from their history (docs/benchmarks.md, the replay).
DEFAULT = 'sequential'
# Every kind, by name, in the order the --model help lists them.
KINDS: Dict[str, ModelKind] = {
    kind.name: kind for kind in (Retrieval(), Multitask(), Sequential())}


def of(name: str) -> ModelKind:
  """The kind called `name`; another name is a ValueError that lists the known ones."""
  if name not in KINDS:
    raise ValueError(f'model kind {name!r} is not one of {tuple(KINDS)}')
  return KINDS[name]


def described() -> str:
  """'retrieval (user -> movies), multitask (...) or sequential (...)': each kind and what it
  recommends from what."""
  parts = [f'{kind.name} ({kind.description})' for kind in KINDS.values()]
  return ' or '.join([', '.join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
