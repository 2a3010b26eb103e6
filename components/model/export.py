"""Exports a trained model as a SavedModel that takes raw features and returns top-k movies.

Two SavedModels come out of one trained model (see write_saved_models):
- the serving model (Trainer's Format-Serving, what the Pusher pushes): serving_default
  searches a ScaNN index over the catalogue; it needs the ScaNN ops to load.
- the evaluation model (Trainer's Format-TFMA, what the Evaluator loads): the same
  signatures with brute-force top-k in plain TensorFlow, because the Evaluator's processes do
  not load the ScaNN ops.
Both carry the plain-TF signatures that TFMA calls: eval_examples (scores for every movie
index) and transform_features (the label, movie_id_index).
"""
import math
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft

from components import features as f
from components.model.catalogue import Catalogue

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


def build_index(index_kind: str, candidate_embeddings: tf.Tensor, k: int) -> tfrs.layers.factorized_top_k.TopK:
  """A top-k layer over the catalogue embeddings; it returns (scores, catalogue positions)."""
  positions = tf.range(tf.shape(candidate_embeddings)[0])
  if index_kind == 'scann':
    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=k, **scann_parameters(int(candidate_embeddings.shape[0]), k))
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


class RecommenderModule(tf.Module):
  """Raw query features -> transform -> query tower -> index -> movie ids, titles, scores.

  Exclusions: the index is searched for top_k + slack candidates, excluded catalogue positions
  are masked out, and the best top_k of the rest are returned, so an excluded movie is never
  returned. The slack is max_excluded (the serving_exclude signature's limit per request) plus,
  with exclude_seen, the longest training history.
  """

  def __init__(self, query_tower: tf.keras.Model, tft_output: tft.TFTransformOutput,
               catalogue: Catalogue, candidate_embeddings: tf.Tensor, index_kind: str,
               top_k: int, num_movie_indices: int, use_timestamps: bool,
               max_excluded: int = 100, exclude_seen: bool = False):
    super().__init__()
    self.query_tower = query_tower
    self.tft_layer = tft_output.transform_features_layer()
    self.raw_feature_spec = tft_output.raw_feature_spec()
    self.use_timestamps = use_timestamps
    self.movie_ids = tf.Variable(catalogue.movie_ids.astype(bytes), trainable=False)
    self.movie_titles = tf.Variable(catalogue.movie_titles.astype(bytes), trainable=False)
    self.candidate_embeddings = tf.Variable(candidate_embeddings, trainable=False)
    self.top_k = min(top_k, len(catalogue))
    # User vocabulary indices from here up are out-of-vocabulary buckets: unknown users.
    self.num_known_users = tft_output.vocabulary_size_by_name(f.USER_ID_VOCAB)
    self.max_excluded = max_excluded
    self.exclude_seen = exclude_seen
    slack = max_excluded
    if exclude_seen:  # kept in the model only when serving uses them
      histories = _padded_histories(catalogue, self.num_known_users)
      self.user_histories = tf.Variable(histories, trainable=False)
      slack += histories.shape[1]
    self.search_k = min(self.top_k + slack, len(catalogue))
    self.index = build_index(index_kind, candidate_embeddings, self.search_k)
    self.movie_positions = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(catalogue.movie_ids.astype(bytes)),
            tf.range(len(catalogue), dtype=tf.int64)), default_value=-1)
    # The catalogue laid out by movie vocabulary index, for scoring every index at once.
    by_index = np.zeros([num_movie_indices, candidate_embeddings.shape[1]], np.float32)
    by_index[catalogue.movie_id_indices] = candidate_embeddings.numpy()
    missing = np.full([num_movie_indices], MISSING_SCORE, np.float32)
    missing[catalogue.movie_id_indices] = 0.0
    self.embeddings_by_movie_index = tf.Variable(by_index, trainable=False)
    self.missing_movie_penalty = tf.Variable(missing, trainable=False)

  def _query_embeddings(self, raw_features: Dict[str, tf.Tensor]) -> tf.Tensor:
    return self.query_tower(self.tft_layer(raw_features))

  def _results(self, scores: tf.Tensor, positions: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {
        f.OUTPUT_MOVIE_IDS: tf.gather(self.movie_ids, positions),
        f.OUTPUT_MOVIE_TITLES: tf.gather(self.movie_titles, positions),
        f.OUTPUT_SCORES: scores,
    }

  def recommend(self, raw_features: Dict[str, tf.Tensor],
                exclude_movie_ids: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Top-k movies per query; a user id not seen in training is an InvalidArgumentError.

    (The out-of-vocabulary embedding would return recommendations that look real but are not
    anybody's. TF Serving turns the error into HTTP 400 / INVALID_ARGUMENT.)
    exclude_movie_ids: [batch, n] movie ids never to return ('' pads short rows; ids outside
    the catalogue are ignored: they cannot be returned anyway).
    """
    transformed = self.tft_layer(raw_features)
    user_index = transformed[f.USER_ID_INDEX]
    known = user_index < self.num_known_users
    check = tf.debugging.Assert(
        tf.reduce_all(known),
        ['unknown user_id (not in the training data):',
         tf.boolean_mask(raw_features[f.USER_ID], tf.logical_not(known))], summarize=10)
    with tf.control_dependencies([check]):
      queries = self.query_tower(transformed)
    excluded = []
    if exclude_movie_ids is not None:
      too_many = tf.debugging.assert_less_equal(
          tf.shape(exclude_movie_ids)[1], self.max_excluded,
          message=f'exclude_movie_ids: at most {self.max_excluded} per user '
          '(export option --max-excluded)')
      with tf.control_dependencies([too_many]):
        excluded.append(self.movie_positions.lookup(exclude_movie_ids))
    if self.exclude_seen:
      excluded.append(tf.gather(self.user_histories, tf.minimum(user_index,
                                                                 self.num_known_users - 1)))
    if not excluded:
      scores, positions = self.index(queries, k=self.top_k)
      return self._results(scores, positions)
    scores, positions = self.index(queries, k=self.search_k)
    excluded = tf.cast(tf.concat(excluded, axis=1), positions.dtype)
    hit = tf.reduce_any(tf.equal(positions[:, :, None], excluded[:, None, :]), axis=-1)
    masked = tf.where(hit, tf.fill(tf.shape(scores), MISSING_SCORE), scores)
    best_scores, best = tf.math.top_k(masked, k=self.top_k)
    # Only a catalogue smaller than top_k + exclusions can leave excluded movies among the
    # best: those slots come back as movie id '' with MISSING_SCORE, never as the movie.
    best_positions = tf.gather(positions, best, batch_dims=1)
    results = self._results(best_scores, best_positions)
    filler = tf.equal(best_scores, MISSING_SCORE)
    for name in (f.OUTPUT_MOVIE_IDS, f.OUTPUT_MOVIE_TITLES):
      results[name] = tf.where(filler, tf.constant(b''), results[name])
    return results

  def eval_examples(self, serialized_examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Scores of every movie vocabulary index, [batch, num_movie_indices], in plain TF.

    TFMA ranks them against the label index (transform_features) for top-k accuracy.
    """
    raw_features = tf.io.parse_example(serialized_examples, self.raw_feature_spec)
    queries = self._query_embeddings(raw_features)
    scores = tf.matmul(queries, self.embeddings_by_movie_index, transpose_b=True)
    return {f.EVAL_SCORES: scores + self.missing_movie_penalty}

  def transform_features(self, serialized_examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The evaluation label: the movie vocabulary index of each rating."""
    raw_features = tf.io.parse_example(serialized_examples, self.raw_feature_spec)
    return {f.MOVIE_ID_INDEX: self.tft_layer(raw_features)[f.MOVIE_ID_INDEX]}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """serving_default(user_id[, timestamp]); serving_exclude(the same, exclude_movie_ids);
    eval_examples and transform_features(examples)."""
    query_specs = [tf.TensorSpec([None], tf.string, name=f.USER_ID)]
    if self.use_timestamps:
      query_specs.append(tf.TensorSpec([None], tf.int64, name=f.TIMESTAMP))
    names = [spec.name for spec in query_specs]
    exclude_spec = tf.TensorSpec([None, None], tf.string, name=f.EXCLUDE_MOVIE_IDS)

    @tf.function(input_signature=query_specs)
    def serve(*query):
      return self.recommend(dict(zip(names, query)))

    @tf.function(input_signature=query_specs + [exclude_spec])
    def serve_exclude(*query_and_exclusions):
      *query, exclusions = query_and_exclusions
      return self.recommend(dict(zip(names, query)), exclusions)

    examples_spec = [tf.TensorSpec([None], tf.string, name='examples')]
    evaluate = tf.function(self.eval_examples, input_signature=examples_spec)
    transform = tf.function(self.transform_features, input_signature=examples_spec)
    return {
        'serving_default': serve.get_concrete_function(),
        f.EXCLUDE_SIGNATURE: serve_exclude.get_concrete_function(),
        f.EVAL_SIGNATURE: evaluate.get_concrete_function(),
        f.TRANSFORM_SIGNATURE: transform.get_concrete_function(),
    }


def save(module: RecommenderModule, path: str) -> None:
  """Writes the SavedModel; ScaNN's ops live in the 'Scann' namespace and must be allowed."""
  tf.saved_model.save(module, path, signatures=module.signatures(),
                      options=tf.saved_model.SaveOptions(namespace_whitelist=['Scann']))
