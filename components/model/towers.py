"""Query and candidate towers, shared by every model variant.

Each tower maps transformed features to one embedding per example; the variants differ only
in the task on top (see retrieval.py), never in copies of these layers.
"""
from typing import Dict, Sequence, Tuple

import tensorflow as tf

from components import features as f
from components.model.config import ModelConfig
from components.model.warm_start import tag_id_table
from components.transform import NUM_OOV_BUCKETS


class BagOfIdsEmbedding(tf.keras.layers.Layer):
  """Mean embedding of a variable-length list of ids (title tokens, genres).

  Expects a SparseTensor or RaggedTensor of int64 ids, [batch, None]; returns [batch, dim].
  An empty list embeds to zeros.
  """

  def __init__(self, vocab_size: int, dim: int, l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.dim = dim
    self.l2 = l2

  def build(self, input_shape):
    self.embeddings = self.add_weight(
        name='embeddings', shape=(self.vocab_size, self.dim),
        initializer='uniform', regularizer=_l2(self.l2), trainable=True)
    super().build(input_shape)

  def call(self, ids):
    if isinstance(ids, tf.RaggedTensor):
      ids = ids.to_sparse()
    return tf.nn.safe_embedding_lookup_sparse(self.embeddings, ids, combiner='mean')


def _l2(weight: float):
  return tf.keras.regularizers.L2(weight) if weight else None


def embedding(vocab_size: int, config: ModelConfig, name: str, **kwargs) -> tf.keras.layers.Embedding:
  """An id embedding table of config.embedding_dim, L2-regularised by config.embedding_l2."""
  return tf.keras.layers.Embedding(vocab_size, config.embedding_dim, name=name,
                                   embeddings_regularizer=_l2(config.embedding_l2), **kwargs)


def dense_stack(layer_sizes: Sequence[int], name: str,
                last_initializer: str = 'glorot_uniform') -> tf.keras.Sequential:
  """ReLU layers with a linear last layer: the output is an embedding, not an activation."""
  layers = [tf.keras.layers.Dense(size, activation='relu') for size in layer_sizes[:-1]]
  layers += [tf.keras.layers.Dense(size, kernel_initializer=last_initializer)
             for size in layer_sizes[-1:]]
  return tf.keras.Sequential(layers, name=name)


def query_dense(config: ModelConfig) -> tf.keras.Sequential:
  """The query tower's dense layers, behind config.query_dropout (a rate of 0 passes the input
  through). One structure whatever the rate, so the weights keep their checkpoint names: a
  model trained with dropout continues without it (warm_start.py, the refit)."""
  return tf.keras.Sequential([tf.keras.layers.Dropout(config.query_dropout),
                              dense_stack(config.layer_sizes, name='query_dense')],
                             name='query_dropout_dense')


def _to_column(values: tf.Tensor) -> tf.Tensor:
  return tf.reshape(tf.cast(values, tf.float32), [-1, 1])


class QueryTower(tf.keras.Model):
  """Embeds who is asking (user id) and, optionally, when (timestamp bucket and z-score).

  Expects transformed features: user_id_index [batch] and, with use_timestamps,
  timestamp_bucket [batch] and timestamp_z [batch]. Returns [batch, output_dim].
  """

  def __init__(self, num_user_ids: int, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.use_timestamps = config.use_timestamps
    self.user_embedding = tag_id_table(
        embedding(num_user_ids + NUM_OOV_BUCKETS, config, 'user_id_embedding'), f.USER_ID_VOCAB)
    if self.use_timestamps:
      # bucketize returns 0..num_buckets: one more row than buckets for values past the top.
      self.timestamp_embedding = embedding(config.timestamp_buckets + 1, config,
                                           'timestamp_bucket_embedding')
    self.dense = query_dense(config)

  def call(self, features: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    parts = [self.user_embedding(features[f.USER_ID_INDEX])]
    if self.use_timestamps:
      parts.append(self.timestamp_embedding(features[f.TIMESTAMP_BUCKET]))
      parts.append(_to_column(features[f.TIMESTAMP_Z]))
    return self.dense(tf.concat(parts, axis=1), training=training)


def _ragged(ids) -> tf.RaggedTensor:
  return tf.RaggedTensor.from_sparse(ids) if isinstance(ids, tf.SparseTensor) else ids


class HistoryEncoder(tf.keras.layers.Layer):
  """Reads a user's recent movies, position by position: the part of ContextTower that varies.

  Expects the embedded history, right-aligned: movies [batch, length, dim] (left padding,
  oldest first, the latest movie at position length - 1) and real [batch, length] (False on
  the padding). Every row has at least one real movie. Returns [batch, length, dim]: at each
  real position, the reading of the movies up to it (causal: never of a later one), so the
  last position reads the whole history, and every-position training (recommender.py) asks
  each position for the movie after it. The padding's outputs mean nothing. The subclasses
  are the encoders the --history-encoder flag names (HISTORY_ENCODERS).
  """
  name_in_config: str

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)


class MeanEncoder(HistoryEncoder):
  """The mean of the real movies' embeddings: order-blind, the cheapest."""
  name_in_config = 'mean'

  def call(self, movies, real, training=None):
    weights = tf.cast(real, movies.dtype)[..., tf.newaxis]
    return (tf.cumsum(movies * weights, axis=1)
            / tf.maximum(tf.cumsum(weights, axis=1), 1.0))


class GruEncoder(HistoryEncoder):
  """A GRU over the movies, oldest first, the padding masked: its state after each movie."""
  name_in_config = 'gru'

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(config, **kwargs)
    self.gru = tf.keras.layers.GRU(config.embedding_dim, return_sequences=True,
                                   name='context_gru')

  def call(self, movies, real, training=None):
    return self.gru(movies, mask=real, training=training)


class AttentionEncoder(HistoryEncoder):
  """Causal self-attention over the movies with learned positions (SASRec, Kang & McAuley
  2018): config.attention_blocks blocks of (multi-head self-attention, position-wise
  feed-forward), each with a residual and layer norm; each position adds a learned embedding
  of its distance from the latest movie. Each position attends to the real movies up to it;
  the last to every one. On ml-100k it lost to the GRU (docs/benchmarks.md)."""
  name_in_config = 'attention'

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(config, **kwargs)
    dim, dropout, heads = config.embedding_dim, config.attention_dropout, config.attention_heads
    self.position_embedding = embedding(config.max_context_length, config,
                                        'context_position_embedding')
    self.dropout = tf.keras.layers.Dropout(dropout)
    self.blocks = [(
        tf.keras.layers.MultiHeadAttention(heads, max(1, dim // heads), dropout=dropout,
                                           name=f'attention_{block}'),
        tf.keras.layers.LayerNormalization(name=f'attention_norm_{block}'),
        tf.keras.Sequential([tf.keras.layers.Dense(dim, activation='relu'),
                             tf.keras.layers.Dense(dim), tf.keras.layers.Dropout(dropout)],
                            name=f'feed_forward_{block}'),
        tf.keras.layers.LayerNormalization(name=f'feed_forward_norm_{block}'))
        for block in range(config.attention_blocks)]

  def call(self, movies, real, training=None):
    length = tf.shape(movies)[1]
    x = movies * tf.cast(tf.shape(movies)[2], movies.dtype) ** 0.5
    x += self.position_embedding(tf.range(length - 1, -1, -1))[tf.newaxis]
    x = self.dropout(x, training=training) * tf.cast(real, x.dtype)[..., tf.newaxis]
    causal = tf.cast(tf.linalg.band_part(tf.ones([length, length]), -1, 0), tf.bool)
    mask = tf.logical_and(causal[tf.newaxis], real[:, tf.newaxis, :])  # [batch, query, key]
    for attention, attention_norm, feed_forward, feed_forward_norm in self.blocks:
      x = attention_norm(x + attention(x, x, attention_mask=mask, training=training))
      x = feed_forward_norm(x + feed_forward(x, training=training))
    return x


# Every history encoder, by its --history-encoder name.
HISTORY_ENCODERS = {encoder.name_in_config: encoder
                    for encoder in (GruEncoder, MeanEncoder, AttentionEncoder)}


class ContextTower(tf.keras.Model):
  """Embeds what the user watched last (sequential): their most recent movies, read by the
  config's history encoder (HISTORY_ENCODERS), and with config.use_user_id who they are.

  Expects context_movie_id_indices: [batch, None] movie vocabulary indices, oldest first,
  sparse or ragged, at least one per row; with use_user_id, user_id_index [batch] (num_user_ids
  for an id outside the vocabulary). Only the last config.max_context_length movies are read;
  shorter histories are padded on the left and the padding masked, so the latest movie is
  always at the last position and the encoder reads the real movies only.
  Returns [batch, output_dim]; every_position gives a query at each position.
  """

  def __init__(self, num_movie_ids: int, config: ModelConfig, num_user_ids: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.max_context_length = config.max_context_length
    # Row 0 is the padding; movie index i is row i + 1.
    self.movie_embedding = tag_id_table(
        embedding(num_movie_ids + NUM_OOV_BUCKETS + 1, config, 'context_movie_embedding'),
        f.MOVIE_ID_VOCAB, first_row=1)
    self.encoder = HISTORY_ENCODERS[config.history_encoder](config, name='history_encoder')
    self.user_embedding = None
    if config.use_user_id:
      # Row num_user_ids (the vocabulary's out-of-vocabulary bucket) is "unknown user".
      self.num_user_ids, self.user_id_dropout = num_user_ids, config.user_id_dropout
      self.user_embedding = tag_id_table(
          embedding(num_user_ids + NUM_OOV_BUCKETS, config, 'context_user_embedding'),
          f.USER_ID_VOCAB)
    self.dense = query_dense(config)

  def _padded_context(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    """[batch, max_context_length] the last movies' indices + 1, left-padded with 0."""
    length = self.max_context_length
    context = _ragged(features[f.CONTEXT_MOVIE_ID_INDICES])[:, -length:]
    # Left padding: reverse, pad on the right, reverse back.
    return tf.reverse(
        tf.reverse(context, axis=[1]).to_tensor(default_value=-1, shape=[None, length]) + 1,
        axis=[1])

  def _queries(self, features: Dict[str, tf.Tensor], states: tf.Tensor,
               training=None) -> tf.Tensor:
    """The dense layers over encoder states [batch, (positions,) dim] and the user id's
    embedding."""
    parts = [states]
    if self.user_embedding is not None:
      users = tf.reshape(features[f.USER_ID_INDEX], [-1])
      if training:  # hide some ids, so the unknown row learns to stand for new users
        hidden = tf.random.uniform(tf.shape(users)) < self.user_id_dropout
        users = tf.where(hidden, tf.constant(self.num_user_ids, users.dtype), users)
      user = self.user_embedding(users)
      if states.shape.rank == 3:  # the same user at every position
        user = tf.repeat(user[:, tf.newaxis], tf.shape(states)[1], axis=1)
      parts.append(user)
    return self.dense(tf.concat(parts, axis=-1), training=training)

  def call(self, features: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    padded = self._padded_context(features)
    states = self.encoder(self.movie_embedding(padded), padded > 0, training=training)
    return self._queries(features, states[:, -1], training=training)

  def every_position(self, features: Dict[str, tf.Tensor], training=None
                     ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A query at each position of the context, for the movie after it: queries [batch,
    max_context_length, output_dim], their next movies' indices [batch, max_context_length]
    (the context's next position, the example's own movie_id_index for the last), and real
    [batch, max_context_length] (False on the padding)."""
    padded = self._padded_context(features)
    real = padded > 0
    states = self.encoder(self.movie_embedding(padded), real, training=training)
    label = tf.reshape(features[f.MOVIE_ID_INDEX], [-1, 1])
    next_movies = tf.concat([padded[:, 1:] - 1, tf.cast(label, padded.dtype)], axis=1)
    return self._queries(features, states, training=training), next_movies, real


class CandidateTower(tf.keras.Model):
  """Embeds a movie from its id and, optionally, its title tokens and genres.

  Expects transformed features: movie_id_index [batch], movie_title_token_indices and
  movie_genre_indices ([batch, None], sparse or ragged). Returns [batch, output_dim].
  """

  def __init__(self, num_movie_ids: int, num_title_tokens: int, num_genres: int,
               config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    dim, l2 = config.embedding_dim, config.embedding_l2
    self.movie_embedding = tag_id_table(
        embedding(num_movie_ids + NUM_OOV_BUCKETS, config, 'movie_id_embedding'),
        f.MOVIE_ID_VOCAB)
    self.title_embedding = (tag_id_table(
        BagOfIdsEmbedding(num_title_tokens + NUM_OOV_BUCKETS, dim, l2, name='title_embedding'),
        f.MOVIE_TITLE_TOKEN_VOCAB) if config.use_title else None)
    self.genre_embedding = (tag_id_table(
        BagOfIdsEmbedding(num_genres + NUM_OOV_BUCKETS, dim, l2, name='genre_embedding'),
        f.MOVIE_GENRE_VOCAB) if config.use_genres else None)
    self.dense = dense_stack(config.layer_sizes, name='candidate_dense')

  def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    parts = [self.movie_embedding(features[f.MOVIE_ID_INDEX])]
    if self.title_embedding is not None:
      parts.append(self.title_embedding(features[f.MOVIE_TITLE_TOKEN_INDICES]))
    if self.genre_embedding is not None:
      parts.append(self.genre_embedding(features[f.MOVIE_GENRE_INDICES]))
    return self.dense(tf.concat(parts, axis=1))
