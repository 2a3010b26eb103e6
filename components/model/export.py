"""Exports a trained model as a SavedModel that takes raw features and returns top-k movies.

Two SavedModels come out of one trained model (components/trainer.py writes both):
- the serving model (Trainer's Format-Serving, what the Pusher pushes): serving_default
  searches a ScaNN index over the catalogue; it needs the ScaNN ops to load.
- the evaluation model (Trainer's Format-TFMA, what the Evaluator loads): the same
  signatures with brute-force top-k in plain TensorFlow, because the Evaluator's processes do
  not load the ScaNN ops.
The evaluation model also carries the plain-TF signatures that TFMA calls: eval_examples (the
rank of each example's movie among the scores of every movie index) and transform_features
(the label, movie_id_index), and score_examples (the scores of every movie index, for the
benchmarks). The serving model does not: they are not for clients, and score_examples answers
[rows, catalogue] floats (250 KB a row at ml-25m's 62k movies) that a server would compute
before refusing to send them.
serving_default and serving_exclude answer every row: a row whose query cannot be formed (a
user id not in the training data; a history with no known movie) gets the fallback ranking,
the training data's most rated movies of its last fallback_days days (Catalogue.popular), and
the `strategy` output says which path answered each row.
One module class per kind of query: UserRecommender (retrieval), RatingRecommender
(multitask: adds predict_rating), ContextRecommender (sequential); each model kind's
export_module (components/model/kinds.py) picks its own.
"""
import absl.logging
import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils

from components import features as f
from components.model.catalogue import Catalogue
from components.model.config import ModelConfig
from components.transform import NUM_OOV_BUCKETS

# Score of a movie index with no catalogue entry (out of vocabulary): never in any top k.
MISSING_SCORE = -1e9


# Up to this many candidates ScaNN scores them all: cheap, and no recall is lost to the tree.
# Past it, a tree of sqrt(N) leaves pays off. (Exhaustive is two leaves, both searched: ScaNN
# 1.3.2's tree with a single leaf returns near-random neighbours.)
EXHAUSTIVE_SEARCH_MAX_CANDIDATES = 10_000


def scann_parameters(num_candidates: int, k: int) -> Dict[str, int]:
  """ScaNN settings for a catalogue of num_candidates and k results.

  Quantized (asymmetric hashing) scores pick the candidates; the best max(4k, 100) are then
  re-scored exactly. Small catalogues are searched exhaustively; large ones through a tree of
  sqrt(N) leaves, searching enough leaves to see ~20k candidates (at least 5% of the leaves).
  """
  reordering = min(num_candidates, max(4 * k, 100))
  if num_candidates <= EXHAUSTIVE_SEARCH_MAX_CANDIDATES:
    leaves = min(2, num_candidates)
    return {'num_leaves': leaves, 'num_leaves_to_search': leaves,
            'num_reordering_candidates': reordering}
  num_leaves = int(math.sqrt(num_candidates))
  candidates_per_leaf = num_candidates / num_leaves
  num_leaves_to_search = min(num_leaves, max(math.ceil(20_000 / candidates_per_leaf),
                                             math.ceil(0.05 * num_leaves)))
  return {'num_leaves': num_leaves, 'num_leaves_to_search': num_leaves_to_search,
          'num_reordering_candidates': reordering}


# ScaNN's quantizer learns 16 centres per block from the candidates, so it needs at least 16
# (fewer fails in ScannCreateSearcher; a single candidate crashes the process). A catalogue that
# small is scored exactly instead: brute force is as fast there and needs no ScaNN ops to serve.
SCANN_MIN_CANDIDATES = 16


def build_index(index_kind: str, candidate_embeddings: tf.Tensor, k: int) -> tfrs.layers.factorized_top_k.TopK:
  """A top-k layer over the catalogue embeddings; it returns (scores, catalogue positions).

  candidate_embeddings: [num_candidates, embedding_dim], any num_candidates >= 1 (below
  SCANN_MIN_CANDIDATES a 'scann' index is brute force); k <= num_candidates.
  """
  num_candidates = int(candidate_embeddings.shape[0])
  positions = tf.range(num_candidates)
  if index_kind == 'scann' and num_candidates < SCANN_MIN_CANDIDATES:
    absl.logging.info('Catalogue of %d movies: fewer than ScaNN needs (%d), so the serving index is '
                 'brute force', num_candidates, SCANN_MIN_CANDIDATES)
    index_kind = 'brute-force'
  if index_kind == 'scann':
    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=k, **scann_parameters(num_candidates, k))
  else:
    layer = tfrs.layers.factorized_top_k.BruteForce(k=k)
  return layer.index(candidate_embeddings, positions)


def _padded_histories(catalogue: Catalogue, num_users: int) -> np.ndarray:
  """[num_users, longest history] catalogue positions of each user's training movies, -1 pads."""
  longest = max((len(history) for history in catalogue.user_histories.values()), default=0)
  table = np.full([num_users, max(longest, 1)], -1, np.int64)
  for user, history in catalogue.user_histories.items():
    if user < num_users:
      table[user, :len(history)] = history
  return table


class Queries(NamedTuple):
  """What a subclass makes of a request's query features.

  embeddings: [batch, d] query embeddings; a row that is not answerable holds anything.
  answerable: [batch] bool, whether the row's query could be formed from what the model was
    trained on; the other rows get the fallback ranking.
  seen: [batch, n] catalogue positions the query has already seen (-1 pads), excluded with
    exclude_seen; None without it.
  """
  embeddings: tf.Tensor
  answerable: tf.Tensor
  seen: Optional[tf.Tensor] = None


class RecommenderModule(tf.Module):
  """Raw query features -> query embeddings -> index -> movie ids, titles, scores, strategy.

  The subclasses say what a query is (UserRecommender: user_id [+ timestamp];
  ContextRecommender: the recent movie ids) and which rows can be answered; this class
  searches, falls back, excludes and evaluates.

  Fallback: a row that is not answerable (Queries.answerable) gets the catalogue's most rated
  movies in the last config.fallback_days days of the training data (Catalogue.popular: ties
  by ratings of all time, then catalogue order), stored in the model as catalogue positions.
  Its scores are those movies' rating counts in the window (as float, best first), not tower
  scores; its `strategy` is 'popular', the other rows' the subclass's `strategy` ('user' or
  'history'). Exclusions apply to fallback rows as to the others. Answerable rows are answered
  as if they were alone in the request.

  Exclusions: the index is searched for top_k + slack candidates, excluded catalogue positions
  are masked out, and the best top_k of the rest are returned, so an excluded movie is never
  returned. The slack is max_excluded (the serving_exclude signature's limit per request) plus,
  with exclude_seen, room for the movies the query has already seen (see
  `prepare_exclude_seen`).
  """

  def __init__(self, query_tower: tf.keras.Model, tft_output: tft.TFTransformOutput,
               catalogue: Catalogue, candidate_embeddings: tf.Tensor, config: ModelConfig,
               index_kind: str):
    super().__init__()
    self.query_tower = query_tower
    self.tft_layer = tft_output.transform_features_layer()
    self.raw_feature_spec = tft_output.raw_feature_spec()
    self.config = config
    self.movie_ids = tf.Variable(catalogue.movie_ids.astype(bytes), trainable=False)
    self.movie_titles = tf.Variable(catalogue.movie_titles.astype(bytes), trainable=False)
    self.candidate_embeddings = tf.Variable(candidate_embeddings, trainable=False)
    self.top_k = min(config.top_k, len(catalogue))
    # Vocabulary indices from here up are out-of-vocabulary buckets: unknown ids.
    self.num_known_users = tft_output.vocabulary_size_by_name(f.USER_ID_VOCAB)
    self.num_known_movies = tft_output.vocabulary_size_by_name(f.MOVIE_ID_VOCAB)
    slack = config.max_excluded + (
        self.prepare_exclude_seen(catalogue) if config.exclude_seen else 0)
    self.search_k = min(self.top_k + slack, len(catalogue))
    self.index = build_index(index_kind, candidate_embeddings, self.search_k)
    fallback, recent_counts = catalogue.popular(config.fallback_days)
    self.fallback_positions = tf.Variable(fallback[:self.search_k], trainable=False)
    self.fallback_scores = tf.Variable(recent_counts[:self.search_k].astype(np.float32),
                                       trainable=False)
    self.movie_positions = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(catalogue.movie_ids.astype(bytes)),
            tf.range(len(catalogue), dtype=tf.int64)), default_value=-1)
    # The catalogue laid out by movie vocabulary index, for scoring every index at once.
    num_movie_indices = self.num_known_movies + NUM_OOV_BUCKETS
    by_index = np.zeros([num_movie_indices, candidate_embeddings.shape[1]], np.float32)
    by_index[catalogue.movie_id_indices] = candidate_embeddings.numpy()
    missing = np.full([num_movie_indices], MISSING_SCORE, np.float32)
    missing[catalogue.movie_id_indices] = 0.0
    self.embeddings_by_movie_index = tf.Variable(by_index, trainable=False)
    self.missing_movie_penalty = tf.Variable(missing, trainable=False)

  # What a query is: the subclasses' part.
  strategy: str  # the `strategy` output of an answerable row

  def query_specs(self) -> List[tf.TensorSpec]:
    """The serving signatures' inputs, named as the raw features."""
    raise NotImplementedError

  def queries(self, inputs: Dict[str, tf.Tensor]) -> Queries:
    """The query embeddings, which rows are answerable, and (with exclude_seen) the movies
    each query has already seen."""
    raise NotImplementedError

  def prepare_exclude_seen(self, catalogue: Catalogue) -> int:
    """Called with exclude_seen only: stores what excluding seen movies needs, and returns how
    many more candidates to search so that top_k are left after excluding them."""
    raise NotImplementedError

  @staticmethod
  def _check_known(known: tf.Tensor, raw_ids: tf.Tensor, what: str) -> tf.Operation:
    """Fails the call, naming the ids, where `known` is false (an id not trained on).

    (An untrained embedding would give answers that look real but are not anybody's.
    TF Serving turns the error into HTTP 400 / INVALID_ARGUMENT.)
    """
    return tf.debugging.Assert(
        tf.reduce_all(known),
        [f'unknown {what} (not in the training data):',
         tf.boolean_mask(raw_ids, tf.logical_not(known))], summarize=10)

  def _search(self, query: Queries, k: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """[batch, k] scores and catalogue positions: the index's for answerable rows, the
    fallback ranking's for the others."""
    scores, positions = self.index(query.embeddings, k=k)
    rows = tf.shape(scores)[0]
    fallback_scores = tf.tile(self.fallback_scores[None, :k], [rows, 1])
    fallback_positions = tf.tile(tf.cast(self.fallback_positions[None, :k], positions.dtype),
                                 [rows, 1])
    answerable = query.answerable[:, None]
    return (tf.where(answerable, scores, fallback_scores),
            tf.where(answerable, positions, fallback_positions))

  def _results(self, scores: tf.Tensor, positions: tf.Tensor,
               query: Queries) -> Dict[str, tf.Tensor]:
    return {
        f.OUTPUT_MOVIE_IDS: tf.gather(self.movie_ids, positions),
        f.OUTPUT_MOVIE_TITLES: tf.gather(self.movie_titles, positions),
        f.OUTPUT_SCORES: scores,
        f.OUTPUT_STRATEGY: tf.where(query.answerable, tf.constant(self.strategy),
                                    tf.constant(f.STRATEGY_POPULAR)),
    }

  def recommend(self, inputs: Dict[str, tf.Tensor],
                exclude_movie_ids: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Top-k movies per query.

    exclude_movie_ids: [batch, n] movie ids never to return ('' pads short rows; ids outside
    the catalogue are ignored: they cannot be returned anyway).
    """
    query = self.queries(inputs)
    excluded = []
    if exclude_movie_ids is not None:
      too_many = tf.debugging.assert_less_equal(
          tf.shape(exclude_movie_ids)[1], self.config.max_excluded,
          message=f'exclude_movie_ids: at most {self.config.max_excluded} per query '
          '(export option --max-excluded)')
      with tf.control_dependencies([too_many]):
        excluded.append(self.movie_positions.lookup(exclude_movie_ids))
    if self.config.exclude_seen:
      excluded.append(query.seen)
    if not excluded:
      return self._results(*self._search(query, self.top_k), query)
    scores, positions = self._search(query, self.search_k)
    excluded = tf.cast(tf.concat(excluded, axis=1), positions.dtype)
    hit = tf.reduce_any(tf.equal(positions[:, :, None], excluded[:, None, :]), axis=-1)
    masked = tf.where(hit, tf.fill(tf.shape(scores), MISSING_SCORE), scores)
    best_scores, best = tf.math.top_k(masked, k=self.top_k)
    # Only more exclusions than the slack can leave excluded movies among the best: those
    # slots come back as movie id '' with MISSING_SCORE, never as the movie.
    best_positions = tf.gather(positions, best, batch_dims=1)
    results = self._results(best_scores, best_positions, query)
    filler = tf.equal(best_scores, MISSING_SCORE)
    for name in (f.OUTPUT_MOVIE_IDS, f.OUTPUT_MOVIE_TITLES):
      results[name] = tf.where(filler, tf.constant(b''), results[name])
    return results

  def _transform_examples(self, serialized_examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self.tft_layer(tf.io.parse_example(serialized_examples, self.raw_feature_spec))

  def movie_scores(self, queries: tf.Tensor) -> tf.Tensor:
    """[batch, num_movie_indices]: every movie vocabulary index's score, in plain TF (a
    movie with no catalogue entry scores MISSING_SCORE)."""
    scores = tf.matmul(queries, self.embeddings_by_movie_index, transpose_b=True)
    return scores + self.missing_movie_penalty

  def eval_outputs(self, transformed: Dict[str, tf.Tensor],
                   queries: tf.Tensor) -> Dict[str, tf.Tensor]:
    """[batch, 1] float: how many movie indices score above each example's movie.

    The movie is in the top k exactly when this rank is below k (ties counted in its favour,
    as tf.math.in_top_k does), so TFMA computes top-k accuracy from one number an example
    (eval_config.TopKAccuracy) rather than from the whole catalogue's scores, which it would
    hold by the thousand (250 KB an example at ml-25m's 62k movies). As in_top_k, a row with a
    score that is not finite (a diverged model) is in no top k: its rank is the number of
    indices.
    """
    scores = self.movie_scores(queries)
    label_scores = tf.gather(scores, transformed[f.MOVIE_ID_INDEX], batch_dims=1)
    above = tf.reduce_sum(tf.cast(scores > label_scores[:, tf.newaxis], tf.int32), axis=1)
    finite = tf.reduce_all(tf.math.is_finite(scores), axis=1)
    rank = tf.where(finite, above, tf.shape(scores)[1])
    return {f.EVAL_LABEL_RANK: tf.cast(rank, tf.float32)[:, tf.newaxis]}

  def eval_labels(self, transformed: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The evaluation label, the movie vocabulary index of each example, and the example's
    user segment (the Evaluator's slices)."""
    return {f.MOVIE_ID_INDEX: transformed[f.MOVIE_ID_INDEX],
            f.USER_SEGMENT: self.segments(transformed)}

  def segments(self, transformed: Dict[str, tf.Tensor]) -> tf.Tensor:
    """[batch] strings: each eval example's user segment (features.USER_SEGMENT)."""
    raise NotImplementedError

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """The clients' signatures: serving_default(query); serving_exclude(query,
    exclude_movie_ids)."""
    query_specs = self.query_specs()
    names = [spec.name for spec in query_specs]
    exclude_spec = tf.TensorSpec([None, None], tf.string, name=f.EXCLUDE_MOVIE_IDS)

    @tf.function(input_signature=query_specs)
    def serve(*query):
      return self.recommend(dict(zip(names, query)))

    @tf.function(input_signature=query_specs + [exclude_spec])
    def serve_exclude(*query_and_exclusions):
      *query, exclusions = query_and_exclusions
      return self.recommend(dict(zip(names, query)), exclusions)

    return {'serving_default': serve.get_concrete_function(),
            f.EXCLUDE_SIGNATURE: serve_exclude.get_concrete_function()}

  def evaluation_signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """The Evaluator's and the benchmarks' signatures, of serialized tf.Examples [batch]:
    eval_examples, score_examples and transform_features."""
    examples_spec = [tf.TensorSpec([None], tf.string, name='examples')]

    @tf.function(input_signature=examples_spec)
    def evaluate(examples):
      transformed = self._transform_examples(examples)
      return self.eval_outputs(transformed, self.query_tower(transformed))

    @tf.function(input_signature=examples_spec)
    def score(examples):
      transformed = self._transform_examples(examples)
      return {f.SCORE_OUTPUT: self.movie_scores(self.query_tower(transformed))}

    @tf.function(input_signature=examples_spec)
    def transform(examples):
      return self.eval_labels(self._transform_examples(examples))

    return {
        f.EVAL_SIGNATURE: evaluate.get_concrete_function(),
        f.SCORE_SIGNATURE: score.get_concrete_function(),
        f.TRANSFORM_SIGNATURE: transform.get_concrete_function(),
    }


class UserRecommender(RecommenderModule):
  """Queries are users: user_id [batch] (and timestamp [batch] with use_timestamps).

  With exclude_seen, each user's training movies are stored in the model and never returned.
  A user id not seen in training is not answerable: it gets the fallback.
  """
  strategy = f.STRATEGY_USER

  def prepare_exclude_seen(self, catalogue: Catalogue) -> int:
    histories = _padded_histories(catalogue, self.num_known_users)
    self.user_histories = tf.Variable(histories, trainable=False)
    return histories.shape[1]

  def query_specs(self) -> List[tf.TensorSpec]:
    specs = [tf.TensorSpec([None], tf.string, name=f.USER_ID)]
    if self.config.use_timestamps:
      specs.append(tf.TensorSpec([None], tf.int64, name=f.TIMESTAMP))
    return specs

  def _user_queries(self, inputs: Dict[str, tf.Tensor]
                    ) -> Tuple[tf.Tensor, tf.Tensor, Dict[str, tf.Tensor]]:
    """Query embeddings, whether each user is known (in the training data), and the
    transformed inputs. (An unknown user's embedding is the untrained out-of-vocabulary one.)"""
    transformed = self.tft_layer(inputs)
    known = transformed[f.USER_ID_INDEX] < self.num_known_users
    return self.query_tower(transformed), known, transformed

  def segments(self, transformed):
    known = transformed[f.USER_ID_INDEX] < self.num_known_users
    return tf.where(known, tf.constant('known user'), tf.constant('new user'))

  def queries(self, inputs):
    queries, known, transformed = self._user_queries(inputs)
    seen = None
    if self.config.exclude_seen:  # an unknown user has seen nothing
      user_index = tf.minimum(transformed[f.USER_ID_INDEX], self.num_known_users - 1)
      seen = tf.where(known[:, None], tf.gather(self.user_histories, user_index),
                      tf.constant(-1, self.user_histories.dtype))
    return Queries(queries, known, seen)


class RatingRecommender(UserRecommender):
  """The multitask model: a UserRecommender that also predicts ratings.

  Adds predict_rating(user_id, movie_id) -> rating, regress_rating (the same for TF Serving's
  Regress API: serialized tf.Examples of user_id and movie_id -> outputs), and the predicted
  rating of each eval example's movie for the Evaluator's RMSE. Ratings are clipped to the
  rating scale.
  """

  def __init__(self, *args, rating_head: tf.keras.Model, **kwargs):
    super().__init__(*args, **kwargs)
    self.rating_head = rating_head

  def _ratings(self, queries: tf.Tensor, user_index: tf.Tensor,
               movie_index: tf.Tensor) -> tf.Tensor:
    candidates = tf.gather(self.embeddings_by_movie_index, movie_index)
    ratings = self.rating_head(queries, candidates, user_index, movie_index)
    scale = f.RATING_SCALES[self.config.rating_scale]
    return tf.clip_by_value(ratings, scale.minimum, scale.maximum)

  def predict_rating(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The rating each user would give each movie; unknown ids are an InvalidArgumentError.

    (No fallback here: a rating for a user or movie the model never saw would be made up.)
    """
    queries, known_user, transformed = self._user_queries(inputs)
    movie_index = transformed[f.MOVIE_ID_INDEX]
    # A movie never rated in training (out of the catalogue) has no trained embedding.
    in_catalogue = tf.equal(tf.gather(self.missing_movie_penalty, movie_index), 0.0)
    checks = [self._check_known(known_user, inputs[f.USER_ID], 'user_id'),
              self._check_known(in_catalogue, inputs[f.MOVIE_ID], 'movie_id')]
    with tf.control_dependencies(checks):
      return {f.OUTPUT_RATING: self._ratings(queries, transformed[f.USER_ID_INDEX],
                                             movie_index)}

  def eval_outputs(self, transformed, queries):
    outputs = super().eval_outputs(transformed, queries)
    outputs[f.OUTPUT_RATING] = self._ratings(queries, transformed[f.USER_ID_INDEX],
                                             transformed[f.MOVIE_ID_INDEX])
    return outputs

  def eval_labels(self, transformed):
    return {**super().eval_labels(transformed), f.USER_RATING: transformed[f.USER_RATING]}

  def signatures(self):
    specs = [tf.TensorSpec([None], tf.string, name=f.USER_ID),
             tf.TensorSpec([None], tf.string, name=f.MOVIE_ID)]
    rate = tf.function(lambda user_id, movie_id: self.predict_rating(
        {f.USER_ID: user_id, f.MOVIE_ID: movie_id}), input_signature=specs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='inputs')])
    def regress(inputs):
      """TF Serving's Regress (and MultiInference) call this: tf.Examples in, a rating each."""
      ids = tf.io.parse_example(inputs, {name: tf.io.FixedLenFeature([], tf.string)
                                         for name in (f.USER_ID, f.MOVIE_ID)})
      return {'outputs': self.predict_rating(ids)[f.OUTPUT_RATING]}

    return {**super().signatures(), f.RATING_SIGNATURE: rate.get_concrete_function(),
            f.REGRESS_RATING_SIGNATURE: regress.get_concrete_function()}


class ContextRecommender(RecommenderModule):
  """The sequential model: a query is the movies a user watched, context_movie_ids [batch, n]
  (with use_user_id, and who they are: user_id [batch], any id, known or not).

  Each row lists movie ids oldest first ('' pads short rows); only the last
  max_context_length known ids are read. Unknown ids are skipped (a movie newer than the
  model); a row with no known id at all (an empty history) is not answerable: it gets the
  fallback. With exclude_seen, the row's movies are never returned.
  """
  strategy = f.STRATEGY_HISTORY

  def prepare_exclude_seen(self, catalogue: Catalogue) -> int:
    return self.config.max_excluded

  def query_specs(self) -> List[tf.TensorSpec]:
    specs = [tf.TensorSpec([None, None], tf.string, name=f.CONTEXT_MOVIE_IDS)]
    if self.config.use_user_id:
      specs.append(tf.TensorSpec([None], tf.string, name=f.USER_ID))
    return specs

  # Upper ends of the history-length segments (known movies in the history), and their names.
  SEGMENT_BOUNDS = (0, 4, 19)
  SEGMENT_NAMES = ('history 0', 'history 1-4', 'history 5-19', 'history 20+')

  def segments(self, transformed):
    context = tf.RaggedTensor.from_sparse(transformed[f.CONTEXT_MOVIE_ID_INDICES])
    known = tf.reduce_sum(tf.cast(context < self.num_known_movies, tf.int32), axis=1)
    bucket = tf.searchsorted(tf.constant(self.SEGMENT_BOUNDS, tf.int32), known, side='left')
    return tf.gather(tf.constant(self.SEGMENT_NAMES), bucket)

  def queries(self, inputs):
    ids = inputs[f.CONTEXT_MOVIE_IDS]
    # The transform graph maps ids to vocabulary indices, as in training ('' is dropped; a
    # user id not in training to the out-of-vocabulary index, the tower's "unknown user").
    raw = {f.CONTEXT_MOVIE_IDS: tf.sparse.from_dense(ids)}
    if self.config.use_user_id:
      raw[f.USER_ID] = inputs[f.USER_ID]
    transformed = self.tft_layer(raw)
    indices = transformed[f.CONTEXT_MOVIE_ID_INDICES]
    context = tf.RaggedTensor.from_sparse(indices)
    context = tf.ragged.boolean_mask(context, context < self.num_known_movies)
    answerable = context.row_lengths() > 0
    # The tower reads movie index 0 for a row with nothing known (its answer is the
    # fallback's), so that no row reaches the GRU all padding.
    empty = tf.cast(tf.logical_not(answerable), tf.int64)
    placeholder = tf.RaggedTensor.from_row_lengths(
        tf.zeros([tf.reduce_sum(empty)], context.dtype), empty)
    features = {f.CONTEXT_MOVIE_ID_INDICES: tf.concat([context, placeholder], axis=1)}
    if self.config.use_user_id:
      features[f.USER_ID_INDEX] = transformed[f.USER_ID_INDEX]
    queries = self.query_tower(features)
    return Queries(queries, answerable, self.movie_positions.lookup(ids))


def save(module: RecommenderModule, path: str, evaluation: bool = False) -> None:
  """Writes the SavedModel: the clients' signatures, and with evaluation the Evaluator's too.
  ScaNN's ops live in the 'Scann' namespace and must be allowed.

  Without Keras' traces: by default tf.saved_model.save also traces every Keras layer's call
  (for keras.models.load_model, which nothing here uses: TF Serving and tf.saved_model.load
  call the signatures). Those traces were three quarters of the saving time, half the
  loading time and three quarters of the files (a sequential ensemble of 2: 25 s -> 7 s to
  save, 8.3 s -> 3.2 s to load, 8.7 MB -> 2.4 MB). The variables, tables, assets and the
  ScaNN index are saved alike. (Keras' save_traces option, which Model.save takes, is a
  context in tf_keras.)
  """
  signatures = module.signatures()
  if evaluation:
    signatures.update(module.evaluation_signatures())
  with keras_saved_model_utils.keras_option_scope(save_traces=False):
    tf.saved_model.save(module, path, signatures=signatures,
                        options=tf.saved_model.SaveOptions(namespace_whitelist=['Scann']))
