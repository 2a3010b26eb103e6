"""create_pipeline(config): the TFX pipeline, components wired in data-flow order."""
import json

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components import pusher as pusher_executor
from components.curated_schema import CuratedSchemaGen
from components.eval_config import make_eval_config
from components import features as f
from components.ingest import example_gen, spans
from components.ingest.span_window import SpanWindow
from components.model.config import REFIT_KEY, TRAIN_SPLITS_KEY
from components.model_card import ModelCard
from components.refit_blessing import RefitBlessing
from components.settings_gen import SettingsGen
from components.validation import AnomaliesGate, DistributionValidator, DriftGate, drift_config
from pipeline.config import PREVIOUS_STATISTICS_RESOLVER, SPAN_WINDOW_RESOLVER, PipelineConfig

# A rolling range that holds every span (RollingRange.num_spans is an int32).
ALL_SPANS = 2**31 - 1


def _example_gen(config: PipelineConfig) -> FileBasedExampleGen:
  executor = example_gen.TimeSplitExecutor if config.split == 'time' else example_gen.Executor
  return FileBasedExampleGen(
      input_base=config.data_dir,
      # One input split over the whole folder, or with span folders over the newest span's
      # (TFX's {SPAN} spec); its files' fingerprint drives caching.
      input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
          name='raw', pattern=spans.SPAN_PATTERN if config.spans else '*')]),
      # train, valid, eval: with the time split in that order in time.
      output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
          example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=percent)
          for name, percent in config.split_percents.items()])),
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor))


def _span_window(config: PipelineConfig, example_gen_component) -> list:
  """With span folders: the resolver of the newest --train-spans spans ExampleGen has
  ingested (this run's among them) and the SpanWindow that joins them; none when the run
  trains on the newest span alone (ExampleGen's output is then the window)."""
  if not config.spans or config.train_spans == 1:
    return []
  window_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
      config={'range_config': tfx.proto.RangeConfig(rolling_range=tfx.proto.RollingRange(
          num_spans=config.train_spans or ALL_SPANS))},
      examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                               producer_component_id=example_gen_component.id,
                               output_key='examples'),
  ).with_id(SPAN_WINDOW_RESOLVER)
  window_resolver.add_upstream_node(example_gen_component)  # this run's span too
  return [window_resolver, SpanWindow(spans=window_resolver.outputs['examples'])]


def _drift_check(config: PipelineConfig, statistics_gen, after) -> list:
  """Components that compare this run's statistics with the previous run's and stop (or warn
  on) a drift past the thresholds; none with --drift-action off. The last one runs after
  `after`, and what follows may wait on it."""
  if config.drift_action == 'off':
    return []
  # The latest statistics before this run's (none on the first run): the resolver runs before
  # StatisticsGen. An unchanged re-run compares its cached statistics with the same as before.
  previous_statistics = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
      statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                 producer_component_id=statistics_gen.id,
                                 output_key='statistics'),
  ).with_id(PREVIOUS_STATISTICS_RESOLVER)
  statistics_gen.add_upstream_node(previous_statistics)
  distribution_validator = DistributionValidator(
      statistics=statistics_gen.outputs['statistics'],
      baseline_statistics=previous_statistics.outputs['statistics'],
      config=drift_config({
          f.USER_RATING: ('jensen_shannon_divergence', config.max_rating_drift),
          f.MOVIE_ID: ('infinity_norm', config.max_id_drift),
          f.USER_ID: ('infinity_norm', config.max_id_drift)}))
  drift_gate = DriftGate(anomalies=distribution_validator.outputs['anomalies'],
                         action=config.drift_action)
  drift_gate.add_upstream_node(after)
  return [previous_statistics, distribution_validator, drift_gate]


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
  """Raw MovieLens folder -> validated, transformed data -> model -> gate -> pushed model."""
  # Reads the raw files into tf.Examples, one per rating, split into train and eval.
  example_gen_component = _example_gen(config)
  examples = example_gen_component.outputs['examples']
  # With span folders: the spans this run trains on, joined (eval: the newest span's).
  span_window = _span_window(config, example_gen_component)
  window = span_window[-1].outputs['examples'] if span_window else examples

  # Computes feature statistics, the schema (curated or inferred), and checks one against the other.
  statistics_gen = tfx.components.StatisticsGen(examples=examples)
  if config.schema_file:
    schema_gen = CuratedSchemaGen(  # pylint: disable=no-value-for-parameter
        schema_file=config.schema_file,
        rating_scale=config.model.rating_scale).with_id('ImportSchemaGen')
  else:
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'])
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  # Stops the run on anomalies, naming each feature and why.
  anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs['anomalies'])
  # Compares the data with the previous run's: a drift past the thresholds stops the run (or
  # warns), naming the feature and the distance.
  drift_check = _drift_check(config, statistics_gen, after=anomalies_gate)

  # The model kind's examples and their Transform (components/model/kinds.py model_data): the
  # ratings, or for sequential TimelineGen's (recent movies -> next movie) examples and their
  # schema. Transform builds vocabularies, timestamp buckets and z-scores; transforms every split.
  kind = config.model.model_kind
  # The model settings the train split's size calls for (components/model/data_settings.py),
  # less those the user chose: recorded in MLMD, read by both Trainers as hyperparameters (and
  # by TimelineGen, whose windows' length is one of them).
  settings_gen = SettingsGen(  # pylint: disable=no-value-for-parameter
      statistics=statistics_gen.outputs['statistics'],
      model_config=json.dumps(config.trained_model.to_dict(), sort_keys=True))
  model_data = kind.model_data(window, schema_gen.outputs['schema'],
                               after=drift_check[-1] if drift_check else anomalies_gate,
                               settings=config,
                               data_settings=settings_gen.outputs['hyperparameters'])
  transform = model_data.transform

  # Finds the latest blessed model: the baseline a new model must not fall below, and with
  # --warm-start the model the Trainer starts from. With span folders it is the live model
  # (the refit one, RefitBlessing below); otherwise the gated one, trained without the eval
  # split that both are judged on.
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver')

  def trainer_of(train_splits, eval_split, base_model, **custom_config):
    return tfx.components.Trainer(
        run_fn='components.trainer.run_fn',
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_gen.outputs['schema'],
        base_model=base_model,
        hyperparameters=settings_gen.outputs['hyperparameters'],
        train_args=tfx.proto.TrainArgs(splits=train_splits),
        eval_args=tfx.proto.EvalArgs(splits=[eval_split]),
        custom_config={**config.trained_model.to_dict(), TRAIN_SPLITS_KEY: train_splits,
                       **custom_config})

  # Trains the TFRS model, at most --epochs, stopping early on the valid split, and exports the
  # serving (ScaNN) and evaluation (plain TF) models.
  trainer = trainer_of(['train'], config.validation_split,
                       model_resolver.outputs['model'] if config.warm_start else None)

  # Computes top-k accuracy (and the kind's own gated metrics: RMSE for multitask) on the eval
  # split and blesses the model if it clears the gate.
  evaluator = tfx.components.Evaluator(
      examples=model_data.examples, model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      example_splits=['eval'],
      # Loads each model's plain-TF Format-TFMA (no ScaNN ops) rather than Format-Serving.
      module_path='components.eval_config',
      eval_config=make_eval_config(
          config.eval_top_ks, config.gate_k, config.min_accuracy, config.max_regression,
          **kind.gate(config)))

  # The gated model continued on every split, the one served (PipelineConfig.refit): with the
  # time split, valid and eval are the newest data. It starts from the gated model's weights
  # and trains refit_epochs more, instead of training again from scratch. Not under the Cond
  # below: a Cond makes the blessing an input, new on every run, so an unchanged re-run would
  # train it again instead of reusing the cached one (and push a new version).
  refit = trainer_of(list(config.split_percents), 'eval', trainer.outputs['model'],
                     **{REFIT_KEY: True}).with_id('Refit') if config.refit else None

  # Past the gate only with a blessing: nothing is pushed otherwise.
  blessed = evaluator.outputs['blessing'].future()[0].custom_property('blessed') == 1
  with tfx.dsl.Cond(blessed):
    # Copies the model into the serving model dir as a new version, unless the latest version
    # already is this model (an unchanged re-run).
    pusher = tfx.components.Pusher(
        model=(refit or trainer).outputs['model'], model_blessing=evaluator.outputs['blessing'],
        custom_executor_spec=executor_spec.ExecutorClassSpec(pusher_executor.Executor),
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir)))
    # With span folders the live (refit) model is the next run's baseline and warm start:
    # blessed under its gated twin's blessing once pushed (components/refit_blessing.py).
    refit_blessing = RefitBlessing(
        model=refit.outputs['model'], blessing=evaluator.outputs['blessing'],
        pushed_model=pusher.outputs['pushed_model']) if refit and config.spans else None
    # What was pushed, how good it is and how to call it, beside the pushed version
    # (components/model_card/).
    model_card = ModelCard(
        model=(refit or trainer).outputs['model'],
        # The gated Trainer's curves: where the validation split stopped it.
        model_run=trainer.outputs['model_run'],
        evaluation=evaluator.outputs['evaluation'], blessing=evaluator.outputs['blessing'],
        pushed_model=pusher.outputs['pushed_model'],
        transform_graph=transform.outputs['transform_graph'], examples=model_data.examples,
        data_settings=settings_gen.outputs['hyperparameters'],
        model_name=config.serving_model_name, model_config=config.trained_model.to_dict(),
        refit=bool(refit))

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=[example_gen_component, statistics_gen, schema_gen, example_validator,
                  anomalies_gate, *drift_check, *span_window, settings_gen, *model_data.components, trainer,
                  model_resolver, evaluator, *([refit] if refit else []), pusher, model_card,
                  *([refit_blessing] if refit_blessing else [])],
      enable_cache=config.enable_cache,
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
          if config.local_metadata else None),
      beam_pipeline_args=list(config.beam_args))
