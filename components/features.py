"""Feature names shared by ingestion, transform, trainer, evaluator and serving.

Every stage refers to features through these constants, so a rename happens in one place.
"""
import dataclasses


# Raw features: what ExampleGen writes into each tf.Example (one example per rating).
USER_ID = 'user_id'  # bytes, e.g. b'42'
MOVIE_ID = 'movie_id'  # bytes, e.g. b'1'
MOVIE_TITLE = 'movie_title'  # bytes, e.g. b'Toy Story (1995)'
MOVIE_GENRES = 'movie_genres'  # bytes list (0..n values), e.g. [b'Animation', b'Comedy']
TIMESTAMP = 'timestamp'  # int64, seconds since the epoch
USER_RATING = 'user_rating'  # float, 1..5
USER_AGE = 'user_age'  # int64: years (ml-100k) or the age-group code (ml-1m)
USER_GENDER = 'user_gender'  # bytes: b'M' or b'F'
USER_OCCUPATION = 'user_occupation'  # bytes, e.g. b'engineer'
USER_ZIP_CODE = 'user_zip_code'  # bytes

# Timeline examples (sequential model), one per (user, next movie): the movies the user rated
# before it, oldest first; the movie_* features describe the next movie, the label.
CONTEXT_MOVIE_IDS = 'context_movie_ids'  # bytes list, up to max_context_length values
# int64 1 or 0: whether a training example ends one of its user's windows, which tile the
# user's training timeline from its last example back, max_context_length movies apart: the
# examples every-position training reads (components/timelines.py).
WINDOW_END = 'window_end'
# int64 1 or 0: the same over the user's whole timeline, examples of every split: the windows
# the refit (which trains on every split) reads.
WINDOW_END_ALL = 'window_end_all'
# The split between train and eval that early stopping reads (ExampleGen's, and so
# TimelineGen's, when the pipeline's valid_percent is not 0).
VALID_SPLIT = 'valid'
# Which of the two a Trainer reads: the windows of the splits it trains on (the refit's: every
# split).
WINDOW_END_OF_SPLITS = {('train',): WINDOW_END, ('train', 'eval'): WINDOW_END_ALL,
                        ('train', VALID_SPLIT, 'eval'): WINDOW_END_ALL}

RAW_STRING_FEATURES = (USER_ID, MOVIE_ID, MOVIE_TITLE, USER_GENDER, USER_OCCUPATION, USER_ZIP_CODE)
RAW_INT_FEATURES = (TIMESTAMP, USER_AGE)
RAW_FLOAT_FEATURES = (USER_RATING,)
RAW_STRING_LIST_FEATURES = (MOVIE_GENRES,)

# Transformed features: what the Transform component's preprocessing_fn outputs.
USER_ID_INDEX = 'user_id_index'  # int64 index into the user id vocabulary
MOVIE_ID_INDEX = 'movie_id_index'  # int64 index into the movie id vocabulary
MOVIE_TITLE_TOKEN_INDICES = 'movie_title_token_indices'  # varlen int64, title-token vocabulary
MOVIE_GENRE_INDICES = 'movie_genre_indices'  # varlen int64, genre vocabulary
TIMESTAMP_BUCKET = 'timestamp_bucket'  # int64 quantile bucket of the timestamp
TIMESTAMP_Z = 'timestamp_z'  # float32 z-scored timestamp
CONTEXT_MOVIE_ID_INDICES = 'context_movie_id_indices'  # varlen int64, movie id vocabulary
# MOVIE_ID, MOVIE_TITLE, USER_RATING and TIMESTAMP also pass through Transform unchanged: the
# trainer needs the raw ids and titles to build the candidate catalogue that serving returns,
# and the timestamps for the serving fallback's recent popularity.

# Vocabulary names, as written by tft.vocabulary into the transform output.
USER_ID_VOCAB = 'user_id_vocab'
MOVIE_ID_VOCAB = 'movie_id_vocab'
MOVIE_TITLE_TOKEN_VOCAB = 'movie_title_token_vocab'
MOVIE_GENRE_VOCAB = 'movie_genre_vocab'
VOCABULARIES = (USER_ID_VOCAB, MOVIE_ID_VOCAB, MOVIE_TITLE_TOKEN_VOCAB, MOVIE_GENRE_VOCAB)

# The serving signature that also takes movie ids never to return (e.g. already watched).
EXCLUDE_SIGNATURE = 'serving_exclude'
EXCLUDE_MOVIE_IDS = 'exclude_movie_ids'  # string [batch, n]; '' pads short rows

# Serving signature outputs.
OUTPUT_MOVIE_IDS = 'movie_ids'
OUTPUT_MOVIE_TITLES = 'movie_titles'
OUTPUT_SCORES = 'scores'
# string [batch]: which path answered each row. A row whose query cannot be formed (a user id
# not in the training data; a history with no known movie) gets the fallback ranking.
OUTPUT_STRATEGY = 'strategy'
STRATEGY_USER = 'user'  # retrieval, multitask: the user's embedding
STRATEGY_HISTORY = 'history'  # sequential: the history's embedding
STRATEGY_POPULAR = 'popular'  # the fallback: the training data's recently most rated movies

# multitask: predict_rating(user_id, movie_id) -> rating, clipped to the rating scale; and
# regress_rating, the same in the shape of TF Serving's Regress API (serialized tf.Examples
# with user_id and movie_id in, `inputs`; ratings out, `outputs`).
RATING_SIGNATURE = 'predict_rating'
REGRESS_RATING_SIGNATURE = 'regress_rating'
OUTPUT_RATING = 'rating'


@dataclasses.dataclass(frozen=True)
class RatingScale:
  """The stars a rating can take. The schema's rating domain, the multitask model's clipping
  and the sequential --min-rating follow the dataset's scale (ModelConfig.rating_scale)."""
  name: str
  minimum: float
  maximum: float
  step: float


# ml-100k and ml-1m rate in whole stars; the CSV family (ml-latest-small, ml-20m, ml-25m,
# ml-32m) in half stars.
RATING_SCALES = {scale.name: scale for scale in (
    RatingScale('whole-stars', 1.0, 5.0, 1.0),
    RatingScale('half-stars', 0.5, 5.0, 0.5),
)}

# Signatures for the Evaluator (plain TF): eval_examples gives the rank of each example's movie
# among every movie index's scores (output `label_rank`; multitask adds `rating`, the predicted
# rating of the rated movie); transform_features gives the labels: movie_id_index (and
# user_rating for multitask). score_examples gives every movie index's scores (`scores`), for
# the benchmarks that exclude seen movies.
EVAL_SIGNATURE = 'eval_examples'
EVAL_LABEL_RANK = 'label_rank'
SCORE_SIGNATURE = 'score_examples'
SCORE_OUTPUT = 'scores'  # float [batch, movie vocabulary size + OOV buckets]
# transform_features also gives each example's user segment, which the Evaluator slices its
# metrics by (the model card's per-segment table): retrieval and multitask, whether the user
# was in the training data; sequential, how many movies of the history the model knows.
USER_SEGMENT = 'user_segment'
TRANSFORM_SIGNATURE = 'transform_features'
