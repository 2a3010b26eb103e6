"""The Trainer component's run_fn: trains the configured TFRS model and exports it.

Training runs at most `epochs` passes; with a validation split (the Trainer's eval_args: the
pipeline's valid split) it stops once the validation top-10 accuracy has not risen for
early_stopping_patience epochs and keeps the best epoch's weights (Keras' EarlyStopping over
epoch_metrics.CatalogueTopK).

With a base model (the pipeline's --warm-start: the latest blessed model), each model starts
from its weights (components/model/warm_start.py) and trains at most warm_start_epochs. The
Refit (custom_config REFIT_KEY) starts from the gated model's weights and continues them for
refit_epochs over every split (or, with refit_from 'scratch', trains fresh weights for the
epochs the gated model kept). Every model leaves its own weights for the next
(Format-WarmStart/ beside its SavedModels).

Passed to the Trainer as a dotted path ('components.trainer.run_fn'), as the TFX taxi template
does, so the same code runs locally and in a Kubeflow container.
"""
from typing import Callable, Dict, List, Optional, Union

import json
import math
import os

import absl.logging
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features as f
from components.model import data_settings, distribution, export, warm_start
from components.model.catalogue import Catalogue
from components.model.config import (EARLY_STOPPING_K, FIT_FILE, REFIT_KEY, TRAIN_SPLITS_KEY,
                                     ModelConfig)
from components.model.distribution import Distribution
from components.model.ensemble import Ensemble
from components.model.epoch_metrics import MAX_EVAL_EXAMPLES, CatalogueTopK
from components.model.recommender import CatalogueNegatives, RecommenderModel
from components.model.towers import CandidateTower
from components.transform import NUM_OOV_BUCKETS

def input_fn(file_pattern, data_accessor: tfx.components.DataAccessor,
             tft_output: tft.TFTransformOutput, batch_size: int, shuffle: bool,
             seed: Optional[int] = None) -> tf.data.Dataset:
  """One pass over transformed examples, in batches of dicts of tensors."""
  return data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=shuffle,
                                     shuffle_seed=seed, shuffle_buffer_size=100_000),
      tft_output.transformed_metadata.schema)


def window_ends(batches: tf.data.Dataset, batch_size: int, seed: Optional[int] = None,
                mark: str = f.WINDOW_END) -> tf.data.Dataset:
  """The examples of timeline batches that end a window (components/timelines.py: mark is
  window_end for the training split's windows, window_end_all for train + eval's), in batches
  of batch_size again (shuffled by the seed when given): what every-position training reads.
  Kept in memory after the first pass: they are one in max_context_length of the split, and
  every later epoch would read the whole split again to find them."""
  windows = (batches.unbatch()
             .filter(lambda example: tf.reduce_all(tf.equal(example[mark], 1)))
             .cache())
  if seed is not None:
    windows = windows.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
  return windows.batch(batch_size)


def _movie_table_size(tft_output: tft.TFTransformOutput) -> int:
  """Rows of a movie id table: the vocabulary and its out-of-vocabulary bucket."""
  return tft_output.vocabulary_size_by_name(f.MOVIE_ID_VOCAB) + NUM_OOV_BUCKETS


def build_model(config: ModelConfig, tft_output: tft.TFTransformOutput,
                catalogue: Catalogue) -> RecommenderModel:
  """Towers sized from the transform's vocabularies, and the tasks of the config's kind
  (components/model/kinds.py: its query tower, and its rating head if it has one)."""
  kind = config.model_kind
  vocab_size = tft_output.vocabulary_size_by_name
  query_tower = kind.query_tower(config, tft_output)
  candidate_tower = CandidateTower(
      vocab_size(f.MOVIE_ID_VOCAB), vocab_size(f.MOVIE_TITLE_TOKEN_VOCAB),
      vocab_size(f.MOVIE_GENRE_VOCAB), config, name='candidate_tower')
  movie_table_size = _movie_table_size(tft_output)
  sampling_probability, catalogue_negatives = None, None
  full_softmax = config.negatives == 'catalogue'
  if full_softmax and len(catalogue) > config.max_catalogue_negatives:
    absl.logging.info('Catalogue of %d movies, over max_catalogue_negatives %d: in-batch '
                      'negatives', len(catalogue), config.max_catalogue_negatives)
    full_softmax = False
  every_position = config.train_positions == 'every'
  if every_position and not full_softmax:
    raise ValueError(
        f"train_positions 'every' ranks every position against the whole catalogue: "
        f'{len(catalogue)} movies with --negatives {config.negatives} and '
        f'--max-catalogue-negatives {config.max_catalogue_negatives} trains on in-batch '
        'negatives; use --negatives catalogue and a larger --max-catalogue-negatives')
  if full_softmax:
    catalogue_negatives = CatalogueNegatives(catalogue.candidate_features(),
                                             catalogue.positions(movie_table_size))
  elif config.sampling_correction:
    sampling_probability = catalogue.sampling_probability(movie_table_size)
  rating_head = kind.rating_head(config, tft_output, catalogue)
  return RecommenderModel(query_tower, candidate_tower, sampling_probability, config.temperature,
                          rating_head, config.retrieval_weight, config.rating_weight,
                          catalogue_negatives, every_position)


def _optimizer(config: ModelConfig, model: RecommenderModel) -> tf.keras.optimizers.Optimizer:
  """config.optimizer for the towers; with a rating head, Adam at rating_learning_rate for it.

  The head needs its own: Adagrad's per-weight steps of learning_rate, right for embedding
  tables, make the head's predicted ratings jump by tenths from batch to batch. (TFRS's
  CompositeOptimizer takes Keras' legacy optimizers, the same algorithms.)
  """
  two_optimizers = model.rating_head is not None
  namespace = tf.keras.optimizers.legacy if two_optimizers else tf.keras.optimizers
  optimizers = {'adagrad': namespace.Adagrad, 'adam': namespace.Adam}
  if config.optimizer not in optimizers:
    raise ValueError(f'optimizer {config.optimizer!r} is not one of {sorted(optimizers)}')
  towers = optimizers[config.optimizer](learning_rate=config.learning_rate)
  if not two_optimizers:
    return towers

  def tower_variables():  # called once the model is built
    head = {id(variable) for variable in model.rating_head.trainable_variables}
    return [variable for variable in model.trainable_variables if id(variable) not in head]

  return tfrs.experimental.optimizers.CompositeOptimizer([
      (namespace.Adam(learning_rate=config.rating_learning_rate),
       lambda: model.rating_head.trainable_variables),
      (towers, tower_variables),
  ])


def _epoch_callbacks(log_dir: Optional[str], member: int, eval_dataset: Optional[tf.data.Dataset],
                     catalogue: Catalogue, tft_output: tft.TFTransformOutput,
                     patience: int, profile_steps: int = 0) -> list:
  """The validation split's catalogue top-k accuracy; early stopping on its top-10 (patience
  epochs; 0: none), which restores the best epoch's weights when training ends; then
  TensorBoard's writer (it writes what the callbacks before it added to the epoch's logs),
  which traces profile_steps steps from the second (config.PROFILE_DIR under log_dir)."""
  callbacks = []
  if eval_dataset is not None and (log_dir or patience):
    callbacks.append(CatalogueTopK(eval_dataset, catalogue.candidate_features(),
                                   catalogue.positions(_movie_table_size(tft_output))))
    if patience:
      callbacks.append(tf.keras.callbacks.EarlyStopping(
          monitor=f'val_top_{EARLY_STOPPING_K}_accuracy', mode='max', patience=patience,
          restore_best_weights=True, verbose=1))
  if log_dir:
    callbacks.append(tf.keras.callbacks.TensorBoard(
        log_dir=os.path.join(log_dir, f'member-{member}'), write_graph=False,
        update_freq='epoch', profile_batch=(2, 1 + profile_steps) if profile_steps else 0))
  return callbacks


def _epochs_trained(history: tf.keras.callbacks.History, callbacks: list) -> Dict[str, object]:
  """What one member's fit did: epochs run, the training loss Keras logged at each epoch's end
  (TFRS's train_step returns the batch's summed loss, so it is the epoch's last batch's), and
  with early stopping the best epoch (1-based, the one whose weights it kept) and its
  validation top-10."""
  metric = f'val_top_{EARLY_STOPPING_K}_accuracy'
  summary = {'epochs': len(history.epoch),
             'loss': [float(loss) for loss in history.history.get('loss', [])]}
  if any(isinstance(callback, tf.keras.callbacks.EarlyStopping) for callback in callbacks):
    values = history.history.get(metric, [])
    if values:
      best = max(range(len(values)), key=values.__getitem__)
      summary.update(best_epoch=best + 1, **{metric: round(float(values[best]), 4)})
  return summary


def train_and_export(config: ModelConfig, tft_output: tft.TFTransformOutput,
                     train_dataset: Callable[[int], tf.data.Dataset],
                     catalogue_dataset: tf.data.Dataset,
                     eval_dataset: Optional[tf.data.Dataset], serving_model_dir: str,
                     eval_model_dir: Optional[str] = None,
                     base_model_dir: Optional[str] = None,
                     log_dir: Optional[str] = None,
                     training: Optional[Distribution] = None,
                     refit: bool = False
                     ) -> Union[RecommenderModel, Ensemble]:
  """Trains, then writes the serving SavedModel (config.index) and the plain-TF eval one, and
  the weights a later model may start from (warm_start.py), all beside serving_model_dir.

  train_dataset(seed) is one pass over the training split, shuffled by the seed, in batches of
  config.batch_size (as eval_dataset). With config.ensemble_size > 1 the model is trained that
  many times, on seeds config.seed, config.seed + 1, ..., and exported as one (ensemble.py).
  eval_dataset: the validation split, each epoch's top-k and early stopping's (None: neither).
  base_model_dir: a previous model's folder to start from, for config.warm_start_epochs (None,
  or one without warm-start weights: from scratch, for config.epochs). refit: base_model_dir
  is the gated model, continued for config.refit_epochs (refit_from 'gated') or trained again
  for the epochs it kept ('scratch'), with no early stopping. log_dir: where
  TensorBoard's event files go (a folder per ensemble member, member-<i>): each epoch's training
  loss and the validation split's catalogue top-k accuracy and loss (epoch_metrics.py), over
  its first MAX_EVAL_EXAMPLES.
  training: this process's part in config.distribution (components/model/distribution.py),
  started before TensorFlow's first op; None: started here. With several workers each trains
  on its share of every batch, and only the chief writes the SavedModels, weights and logs.
  """
  training = training or distribution.of(config.distribution).start()
  if eval_dataset is not None:
    # Each epoch's validation loss and top-k (early stopping's and TensorBoard's; the gate is
    # the Evaluator's, on the eval split) from its first MAX_EVAL_EXAMPLES: a whole split of
    # 10M ratings (2M examples) took 75 s an epoch.
    eval_dataset = eval_dataset.take(math.ceil(MAX_EVAL_EXAMPLES / config.batch_size))
  catalogue = Catalogue.from_dataset(catalogue_dataset)
  absl.logging.info('Catalogue: %d movies', len(catalogue))
  vocabularies = {name: tft_output.vocabulary_by_name(name) for name in f.VOCABULARIES}
  warm = warm_start.has_state(base_model_dir)
  if refit and config.refit_from == 'gated' and not warm:
    raise ValueError(f'the refit continues the gated model, and {base_model_dir} holds no '
                     f'warm-start weights ({warm_start.STATE_DIR}/)')
  if refit and config.refit_from == 'scratch':
    warm, epochs = False, kept_epochs(base_model_dir, config.epochs)
  else:
    epochs = (config.refit_epochs if refit else config.warm_start_epochs if warm
              else config.epochs)
  if base_model_dir and not warm and not refit:
    absl.logging.warning('%s holds no warm-start weights: training from scratch',
                         base_model_dir)
  train_config = training.training_config(config)

  def build_weights(model: RecommenderModel, seed: int) -> RecommenderModel:
    model.compute_loss(next(iter(train_dataset(seed))), training=False)  # one batch
    return model

  # The chief alone measures the validation top-k: with several workers a stop on one would
  # leave the others waiting in an all-reduce.
  patience = (config.early_stopping_patience
              if eval_dataset is not None and not refit and training.replicas == 1 else 0)
  members, summaries, fits = [], [], []
  for member in range(config.ensemble_size):
    seed = config.seed + member
    if config.ensemble_size > 1:
      absl.logging.info('Training ensemble member %d of %d (seed %d)', member + 1,
                        config.ensemble_size, seed)
    tf.keras.utils.set_random_seed(seed)
    with training.scope():
      model = build_model(train_config, tft_output, catalogue)
      model.compile(optimizer=_optimizer(config, model))
      if warm:  # builds the weights, then overwrites them
        build_weights(model, seed)
    if warm:
      summaries.append(warm_start.restore(model, member, base_model_dir, vocabularies))
      if refit:  # the same run's gated model: its optimizer goes on where it stopped
        summaries[-1]['optimizer'] = warm_start.restore_optimizer(model, member,
                                                                  base_model_dir)
      absl.logging.info('Warm start of member %d: %s', member, summaries[-1])
    callbacks = training.callbacks(
        _epoch_callbacks(log_dir, member, None if refit else eval_dataset, catalogue,
                         tft_output, patience, config.profile_steps if member == 0 else 0))
    history = model.fit(**training.fit_arguments(
                            train_dataset(seed), train_examples(config, train_dataset, catalogue),
                            config.batch_size),
                        epochs=epochs, verbose=2, callbacks=callbacks)
    fits.append(_epochs_trained(history, callbacks))
    absl.logging.info('Member %d trained: %s', member, fits[-1])
    training.report(member, model)
    members.append(training.exportable(
        model, lambda: build_weights(build_model(config, tft_output, catalogue), seed)))
  model = members[0] if len(members) == 1 else Ensemble.of(members)
  if training.writes_outputs:
    _export(config, tft_output, catalogue, model, members, vocabularies, summaries,
            serving_model_dir, eval_model_dir, fits)
  training.finish()
  return model


def kept_epochs(model_dir: Optional[str], default: int) -> int:
  """The most epochs a member of the model in model_dir kept (its best epoch when it stopped
  early, else all it ran), from its FIT_FILE; default when it has none."""
  path = os.path.join(model_dir, FIT_FILE) if model_dir else None
  if not path or not tf.io.gfile.exists(path):
    return default
  with tf.io.gfile.GFile(path) as file:
    return max(fit.get('best_epoch', fit['epochs']) for fit in json.load(file))


def train_examples(config: ModelConfig, train_dataset: Callable[[int], tf.data.Dataset],
                   catalogue: Catalogue) -> Callable[[], int]:
  """The rows train_dataset passes over, counted only when asked (multi-worker steps): every
  training example (the catalogue's ratings), or for every-position training the window ends
  (one pass over them)."""
  if config.train_positions == 'every':
    return lambda: _examples(train_dataset(config.seed))
  return lambda: len(catalogue.ratings[0])


def _examples(dataset: tf.data.Dataset) -> int:
  """The rows of a batched dataset (one pass over it)."""
  return sum(int(tf.shape(batch[f.MOVIE_ID_INDEX])[0]) for batch in dataset)


def _export(config: ModelConfig, tft_output: tft.TFTransformOutput, catalogue: Catalogue,
            model: Union[RecommenderModel, Ensemble], members: List[RecommenderModel],
            vocabularies: Dict[str, List[bytes]], summaries: List[dict],
            serving_model_dir: str, eval_model_dir: Optional[str],
            fits: List[Dict[str, object]]) -> None:
  """Writes the warm-start weights (and what the warm start carried), what each member's fit
  did (FIT_FILE: epochs run, best epoch), the serving SavedModel and the eval one."""
  model_dir = os.path.dirname(serving_model_dir.rstrip('/'))
  state_dir = warm_start.save(members, vocabularies, model_dir)
  warm_start.save_optimizer(members, model_dir)
  if summaries:
    with tf.io.gfile.GFile(os.path.join(state_dir, warm_start.SUMMARY_FILE), 'w') as file:
      json.dump(summaries, file, indent=1)
  with tf.io.gfile.GFile(os.path.join(model_dir, FIT_FILE), 'w') as file:
    json.dump(fits, file, indent=1)

  candidate_embeddings = model.candidate_tower(catalogue.candidate_features())

  def module(index_kind):
    return config.model_kind.export_module(model, tft_output, catalogue, candidate_embeddings,
                                           config, index_kind)

  export.save(module(config.index), serving_model_dir)
  if eval_model_dir:
    export.save(module('brute-force'), eval_model_dir, evaluation=True)


# What TFX's Vertex AI Trainer (tfx.extensions.google_cloud_ai_platform.Trainer) reads of the
# custom_config, beside the model's: the job's worker pools, region and name.
VERTEX_KEYS = (tfx.extensions.google_cloud_ai_platform.TRAINING_ARGS_KEY,
               tfx.extensions.google_cloud_ai_platform.JOB_ID_KEY,
               tfx.extensions.google_cloud_ai_platform.LABELS_KEY,
               tfx.extensions.google_cloud_ai_platform.ENABLE_VERTEX_KEY,
               tfx.extensions.google_cloud_ai_platform.VERTEX_REGION_KEY,
               tfx.extensions.google_cloud_ai_platform.ENABLE_UCAIP_KEY,
               tfx.extensions.google_cloud_ai_platform.UCAIP_REGION_KEY)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """TFX Trainer entry point (on every worker of a multi-worker Trainer)."""
  custom_config = dict(fn_args.custom_config or {})
  # The splits this Trainer trains on (the pipeline's: train; the refit's: every split): which
  # windows every-position training reads.
  train_splits = tuple(custom_config.pop(TRAIN_SPLITS_KEY, ['train']))
  refit = bool(custom_config.pop(REFIT_KEY, False))
  config = ModelConfig.from_dict({key: value for key, value in custom_config.items()
                                  if key not in VERTEX_KEYS})
  # SettingsGen's choice (components/settings_gen.py), or a Tuner's best hyperparameters.
  chosen = data_settings.values_of(fn_args.hyperparameters or {})
  if chosen:
    config = data_settings.apply(config, chosen)
    absl.logging.info('Settings chosen for the data: %s', chosen)
  if config.train_positions == 'every' and train_splits not in f.WINDOW_END_OF_SPLITS:
    raise ValueError(f'train_positions every reads the windows TimelineGen marks for the '
                     f'splits {" or ".join(map(str, f.WINDOW_END_OF_SPLITS))}, not for '
                     f'{train_splits}')
  window_mark = f.WINDOW_END_OF_SPLITS.get(train_splits)
  # Before any TensorFlow op: multi-worker collectives are configured at start-up.
  training = distribution.of(config.distribution).start()
  tft_output = tft.TFTransformOutput(fn_args.transform_output)

  def dataset(files, shuffle, seed=None):
    return input_fn(files, fn_args.data_accessor, tft_output, config.batch_size, shuffle,
                    seed=seed)

  def train_dataset(seed):
    if config.train_positions == 'every':
      return window_ends(dataset(fn_args.train_files, shuffle=False), config.batch_size, seed,
                         window_mark)
    return dataset(fn_args.train_files, shuffle=True, seed=seed)

  train_and_export(
      config, tft_output,
      train_dataset=train_dataset,
      catalogue_dataset=dataset(fn_args.train_files, shuffle=False),
      eval_dataset=dataset(fn_args.eval_files, shuffle=False),
      serving_model_dir=fn_args.serving_model_dir,
      eval_model_dir=fn_args.eval_model_dir,
      # TFX gives the base model's Format-Serving folder; its weights are beside it.
      base_model_dir=os.path.dirname(fn_args.base_model.rstrip('/')) if fn_args.base_model
      else None,
      # TFX's ModelRun artifact, where Kubeflow's and Vertex AI's TensorBoard look.
      log_dir=fn_args.model_run_dir, training=training, refit=refit)
