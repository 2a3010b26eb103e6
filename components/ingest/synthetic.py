"""Synthetic MovieLens-shaped datasets, written in the raw GroupLens formats: ml-100k, ml-1m
and the CSV family of today's releases (ml-latest-small ... ml-32m).

Why: the pipeline must run (tests, CI, laptops without network) without the real archive, and a
dataset of random noise would let a broken model look as good as a working one. So the data
has structure a two-tower retrieval model can learn:

* users and movies have latent taste vectors; movies sit in clusters, one per genre, so genres
  (and genre-themed title words) carry signal about the latent space;
* which movie a user rates is drawn from softmax(affinity + popularity), popularity being
  Zipf-like, so a few movies get most ratings as in the real data;
* the rating rises with the user's affinity for the movie: a latent score of about 1..5,
  rounded to whole stars (ml-100k, ml-1m) or to half stars, 0.5..5.0 (the CSV family);
* over the ~6 months the data spans, tastes drift, popularity trends up or down, and some
  movies are released part-way through, so a time-based split sees a real shift.

The CSV format also reproduces that family's quirks (quoted titles, `(no genres listed)`,
UTF-8 beyond latin-1: see _write_csv) and scales to ml-25m's size in bounded memory: its ratings
are sampled in batches and streamed to the file (_sample_ratings_in_pools).

Deterministic: the same arguments give byte-identical files; the ml-100k and ml-1m files are
byte-identical to those of earlier versions of this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Iterable, Iterator

import numpy as np

from components.ingest import movielens

LATENT_DIM = 8
MIN_RATINGS_PER_USER = 5
START_TIMESTAMP = 874_713_600  # 1997-09-20 00:00 UTC, where the real ml-100k begins
SPAN_SECONDS = 182 * 24 * 3600  # about six months

_GENRES = movielens.ML100K_GENRES[1:]  # 'unknown' only exists to flag broken real records
_ZIPF_EXPONENT = 1.2  # popularity logit = -exponent * log(rank + 1)
_AFFINITY_SCALE = 3.0  # how strongly taste, against popularity, decides what gets rated
_TREND_SCALE = 1.0  # popularity logit change from the start to the end of the window
_TASTE_DRIFT = 0.5  # per-dimension std of a user's taste change across the window
_PRE_RELEASE_PENALTY = 8.0  # logit penalty for rating a movie before its release
_SEGMENTS_PER_USER = 3  # a user's ratings are sampled in this many time slices
_MOVIE_SPREAD = 0.2  # per-dimension std of a movie around its genre centroid
_USER_SPREAD = 0.2  # per-dimension std of a user around their favourite genres' mix

_ML100K_OCCUPATIONS = (
    'administrator', 'artist', 'doctor', 'educator', 'engineer', 'entertainment', 'executive',
    'healthcare', 'homemaker', 'lawyer', 'librarian', 'marketing', 'none', 'other', 'programmer',
    'retired', 'salesman', 'scientist', 'student', 'technician', 'writer',
)
_ML1M_AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)  # code = lowest age of its group (README)

# Title words. Genre words make title tokens informative about genre; all are latin-1.
_ADJECTIVES = (
    'Velvet', 'Silent', 'Crimson', 'Golden', 'Broken', 'Hidden', 'Last', 'Midnight', 'Wild',
    'Lonely', 'Burning', 'Frozen', 'Distant', 'Secret', 'Electric', 'Bitter', 'Restless',
    'Quiet', 'Savage', 'Endless', 'Paper', 'Iron', 'Glass', 'Blue', 'Little', 'Long',
)
_NOUNS = (
    'Harbor', 'River', 'City', 'Road', 'Garden', 'Summer', 'Winter', 'Heart', 'Kingdom',
    'Shadow', 'Promise', 'Season', 'Dream', 'Journey', 'Station', 'Island', 'Mirror', 'Letter',
    'Horizon', 'Bridge', 'Stranger', 'Affair', 'Café', 'Señorita', 'Hotel', 'Night', 'Game',
)
_GENRE_WORDS = {
    'Action': ('Fury', 'Strike', 'Bullet', 'Target'),
    'Adventure': ('Quest', 'Treasure', 'Expedition', 'Jungle'),
    'Animation': ('Bunny', 'Toon', 'Magic', 'Kitten'),
    "Children's": ('Puppy', 'Friends', 'Kid', 'Birthday'),
    'Comedy': ('Crazy', 'Wedding', 'Party', 'Trouble'),
    'Crime': ('Heist', 'Gangster', 'Cop', 'Alibi'),
    'Documentary': ('Portrait', 'Chronicle', 'Life', 'Witness'),
    'Drama': ('Tears', 'Family', 'Sister', 'Memory'),
    'Fantasy': ('Wizard', 'Sorcerer', 'Enchanted', 'Realm'),
    'Film-Noir': ('Dame', 'Alley', 'Double', 'Smoke'),
    'Horror': ('Haunting', 'Blood', 'Nightmare', 'Terror'),
    'Musical': ('Song', 'Dance', 'Melody', 'Broadway'),
    'Mystery': ('Clue', 'Riddle', 'Vanishing', 'Enigma'),
    'Romance': ('Love', 'Kiss', 'Amour', 'Valentine'),
    'Sci-Fi': ('Galaxy', 'Robot', 'Planet', 'Cyborg'),
    'Thriller': ('Panic', 'Edge', 'Pursuit', 'Hostage'),
    'War': ('Battle', 'Soldier', 'Front', 'Platoon'),
    'Western': ('Outlaw', 'Sheriff', 'Canyon', 'Hombre'),
}

_DATASET_FILE_NAMES = frozenset(
    name for files in movielens.FILE_NAMES.values() for name in files.values())


@dataclasses.dataclass
class _Catalogue:
  """The hidden truth behind the movies."""
  vectors: np.ndarray  # (movies, LATENT_DIM)
  genre_ids: list[tuple[int, ...]]  # indices into _GENRES, sorted
  base_logit: np.ndarray  # Zipf popularity
  trend: np.ndarray  # popularity logit change across the window
  release_time: np.ndarray  # in [0, 1) window units; negative = released before the window
  quality: np.ndarray  # shifts everyone's ratings of the movie
  years: np.ndarray
  titles: list[str]


@dataclasses.dataclass
class _Audience:
  """The hidden truth behind the users, plus their demographics."""
  vectors: np.ndarray  # (users, LATENT_DIM), taste at mid-window
  drift: np.ndarray  # (users, LATENT_DIM), taste change across the window
  rating_bias: np.ndarray
  window: np.ndarray  # (users, 2): first and last activity time, window units
  ages: np.ndarray  # years
  genders: list[str]
  occupation_ids: np.ndarray  # index into the format's occupation list


@dataclasses.dataclass
class _Ratings:
  user_index: np.ndarray
  movie_index: np.ndarray
  score: np.ndarray  # the latent rating, about 1..5; each format rounds it to its stars
  timestamp: np.ndarray  # int seconds since the epoch

  def take(self, rows) -> '_Ratings':
    return _Ratings(self.user_index[rows], self.movie_index[rows], self.score[rows],
                    self.timestamp[rows])

  @classmethod
  def concatenate(cls, blocks: list['_Ratings']) -> '_Ratings':
    return cls(*(np.concatenate([getattr(block, field.name) for block in blocks])
                 for field in dataclasses.fields(cls)))


def generate(out_dir, *, num_users: int = 200, num_movies: int = 300, num_ratings: int = 20_000,
             seed: int = 0, fmt: str = 'ml-100k') -> pathlib.Path:
  """Writes a complete synthetic dataset in the raw `fmt` format to out_dir; returns out_dir.

  out_dir appears all at once (written beside it, then renamed), so an interrupted run never
  leaves a half-written dataset. An existing out_dir holding only dataset files is replaced;
  one holding anything else is refused rather than deleted.
  """
  out_dir = pathlib.Path(out_dir)
  _check_sizes(num_users, num_movies, num_ratings, fmt)
  _check_replaceable(out_dir)
  rng = np.random.default_rng(seed)
  centroids = _unit_rows(rng.normal(size=(len(_GENRES), LATENT_DIM)))
  catalogue = _make_catalogue(rng, centroids, num_movies)
  audience = _make_audience(rng, centroids, num_users, fmt)
  counts = _ratings_per_user(rng, num_users, num_movies, num_ratings)
  sample, write = _FORMATS[fmt]
  ratings = sample(rng, catalogue, audience, counts)  # the CSV format's: a lazy stream
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f'.{out_dir.name}.tmp-'))
  try:
    write(staging, rng, catalogue, audience, ratings)
    _publish(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return out_dir


def _check_sizes(num_users: int, num_movies: int, num_ratings: int, fmt: str) -> None:
  if fmt not in movielens.FORMATS:
    raise ValueError(f'unknown format {fmt!r}; expected one of {movielens.FORMATS}')
  if num_users < 1 or num_movies < 1:
    raise ValueError('need at least one user and one movie')
  minimum = num_users * min(MIN_RATINGS_PER_USER, num_movies)
  if not minimum <= num_ratings <= num_users * num_movies:
    raise ValueError(
        f'num_ratings={num_ratings} must lie in [{minimum}, {num_users * num_movies}]: every '
        f'user rates at least {MIN_RATINGS_PER_USER} movies, and each movie at most once')


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
  return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# The hidden world.


def _make_catalogue(rng: np.random.Generator, centroids: np.ndarray,
                    num_movies: int) -> _Catalogue:
  """Movies clustered around genre centroids; some genres (clusters) much bigger than others."""
  genre_share = _zipf_weights(rng, len(_GENRES), exponent=0.8)
  cluster = rng.choice(len(_GENRES), size=num_movies, p=genre_share)
  vectors = centroids[cluster] + rng.normal(scale=_MOVIE_SPREAD, size=(num_movies, LATENT_DIM))
  base_logit = -_ZIPF_EXPONENT * np.log1p(rng.permutation(num_movies))
  popularity_z = (base_logit - base_logit.mean()) / (base_logit.std() + 1e-9)
  release_time = np.where(rng.random(num_movies) < 0.1,
                          rng.uniform(0.1, 0.9, num_movies), -1.0)
  genre_ids = _assign_genres(rng, vectors, centroids, cluster)
  years = _release_years(rng, release_time)
  return _Catalogue(
      vectors=vectors, genre_ids=genre_ids, base_logit=base_logit,
      trend=rng.normal(scale=_TREND_SCALE, size=num_movies), release_time=release_time,
      quality=rng.normal(scale=0.35, size=num_movies) + 0.15 * popularity_z, years=years,
      titles=_make_titles(rng, cluster, years))


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
  weights = 1.0 / (1.0 + rng.permutation(n)) ** exponent
  return weights / weights.sum()


def _assign_genres(rng: np.random.Generator, vectors: np.ndarray, centroids: np.ndarray,
                   cluster: np.ndarray) -> list[tuple[int, ...]]:
  """Own cluster's genre, plus sometimes the genres of the next-closest centroids."""
  similarity = vectors @ centroids.T
  similarity[np.arange(len(cluster)), cluster] = -np.inf
  runner_ups = np.argsort(-similarity, axis=1)[:, :2]
  keep = rng.random(runner_ups.shape) < np.array([0.4, 0.1])
  return [tuple(sorted({int(own), *runner_up[kept].tolist()}))
          for own, runner_up, kept in zip(cluster, runner_ups, keep)]


def _release_years(rng: np.random.Generator, release_time: np.ndarray) -> np.ndarray:
  """Mostly recent back-catalogue; movies released inside the window get the window's year."""
  first_year = datetime.datetime.fromtimestamp(START_TIMESTAMP, datetime.timezone.utc).year
  back_catalogue = np.maximum(first_year - np.floor(rng.exponential(12.0, len(release_time))),
                              1920).astype(int)
  release_seconds = START_TIMESTAMP + np.maximum(release_time, 0) * SPAN_SECONDS
  in_window = np.array([datetime.datetime.fromtimestamp(s, datetime.timezone.utc).year
                        for s in release_seconds])
  return np.where(release_time >= 0, in_window, back_catalogue)


def _make_titles(rng: np.random.Generator, cluster: np.ndarray, years: np.ndarray) -> list[str]:
  """Unique 'Words (year)' titles sharing words; articles go last ('Road, The'), as in GroupLens."""
  titles: list[str] = []
  seen: set[str] = set()
  for movie, (own, year) in enumerate(zip(cluster, years)):
    genre_words = _GENRE_WORDS[_GENRES[own]]
    for _ in range(20):
      title = f'{_title_words(rng, genre_words)} ({year})'
      if title not in seen:
        break
    else:  # crowded: number it (generated words hold no digits, so this cannot collide)
      title = f'{_title_words(rng, genre_words)} {movie + 1} ({year})'
    seen.add(title)
    titles.append(title)
  return titles


def _title_words(rng: np.random.Generator, genre_words: tuple[str, ...]) -> str:
  def pick(words):
    return words[rng.integers(len(words))]
  pattern = rng.integers(6)
  if pattern == 0:
    return f'{pick(_ADJECTIVES)} {pick(_NOUNS)}, The'
  if pattern == 1:
    return f'{pick(_ADJECTIVES)} {pick(_NOUNS)}'
  if pattern == 2:
    return f'{pick(_NOUNS)} of the {pick(genre_words)}'
  if pattern == 3:
    return f'{pick(genre_words)} {pick(_NOUNS)}'
  if pattern == 4:
    return f'{pick(genre_words)}, The'
  return f'{pick(_ADJECTIVES)} {pick(genre_words)}'


def _make_audience(rng: np.random.Generator, centroids: np.ndarray, num_users: int,
                   fmt: str) -> _Audience:
  """Users who like one or two genres, with age nudging taste so demographics carry signal."""
  favourite = rng.integers(len(_GENRES), size=(num_users, 2))
  second_weight = rng.uniform(0, 0.8, size=(num_users, 1))
  ages = np.clip(rng.normal(32, 11, num_users), 7, 73).astype(int)
  age_direction = _unit_rows(rng.normal(size=(1, LATENT_DIM)))
  vectors = (centroids[favourite[:, 0]] + second_weight * centroids[favourite[:, 1]]
             + rng.normal(scale=_USER_SPREAD, size=(num_users, LATENT_DIM))
             + 0.4 * ((ages[:, None] - 32) / 11) * age_direction)
  start = rng.uniform(0, 0.95, num_users)
  end = np.minimum(1.0, start + 0.02 + rng.exponential(0.3, num_users))
  return _Audience(
      vectors=vectors, drift=rng.normal(scale=_TASTE_DRIFT, size=(num_users, LATENT_DIM)),
      rating_bias=rng.normal(scale=0.35, size=num_users), window=np.stack([start, end], 1),
      ages=ages, genders=['M' if male else 'F' for male in rng.random(num_users) < 0.71],
      occupation_ids=_occupations(rng, ages, fmt))


def _occupations(rng: np.random.Generator, ages: np.ndarray, fmt: str) -> np.ndarray:
  """Occupation index into the format's list; the young are mostly students."""
  if fmt == 'ml-100k':
    count, student = len(_ML100K_OCCUPATIONS), np.full(len(ages), 18)
  else:
    count = len(movielens.ML1M_OCCUPATIONS)
    student = np.where(ages < 18, 10, 4)  # K-12 student, college/grad student
  drawn = rng.integers(count, size=len(ages))
  return np.where((ages < 23) & (rng.random(len(ages)) < 0.7), student, drawn)


def _ratings_per_user(rng: np.random.Generator, num_users: int, num_movies: int,
                      num_ratings: int) -> np.ndarray:
  """Heavy-tailed activity: at least a few ratings each, never more than there are movies."""
  floor = min(MIN_RATINGS_PER_USER, num_movies)
  counts = np.full(num_users, floor)
  activity = rng.lognormal(0, 1.0, num_users)
  left = num_ratings - counts.sum()
  while left > 0:
    room = num_movies - counts
    weights = activity * (room > 0)
    counts += np.minimum(rng.multinomial(left, weights / weights.sum()), room)
    left = num_ratings - counts.sum()
  return counts


# --------------------------------------------------------------------------------------------
# Sampling ratings: one choice model (softmax over affinity + popularity, distinct movies per
# user) and one rating model (_rating_score), with two samplers of it: _sample_ratings, exact and
# user by user, for the older formats (their files stay byte-identical from release to
# release), and _sample_ratings_in_pools, batched, for the CSV family's millions of ratings.


def _sample_ratings(rng: np.random.Generator, catalogue: _Catalogue, audience: _Audience,
                    counts: np.ndarray) -> _Ratings:
  """Per user and time slice: distinct movies via Gumbel-top-k on softmax(affinity + popularity).

  Gumbel-top-k equals drawing from the softmax without replacement, in one vectorised step;
  movies taken in an earlier slice are masked out, so no (user, movie) pair repeats. Every
  movie is scored for every user and slice: exact, but hours at ml-25m's size.
  """
  total = int(counts.sum())
  ratings = _Ratings(np.empty(total, np.int64), np.empty(total, np.int64),
                     np.empty(total, np.float64), np.empty(total, np.int64))
  num_movies = len(catalogue.vectors)
  filled = 0
  for user, count in enumerate(counts):
    taken = np.zeros(num_movies, bool)
    first, last = audience.window[user]
    for slice_index, size in enumerate(_split_evenly(count, _SEGMENTS_PER_USER)):
      lo = first + (last - first) * slice_index / _SEGMENTS_PER_USER
      hi = first + (last - first) * (slice_index + 1) / _SEGMENTS_PER_USER
      when = (lo + hi) / 2
      affinity = catalogue.vectors @ _taste(audience, user, when)
      logits = _choice_logits(affinity, catalogue.base_logit, catalogue.trend,
                              catalogue.release_time, when)
      logits[taken] = -np.inf
      keys = logits + rng.gumbel(size=num_movies)
      chosen = np.argpartition(-keys, size - 1)[:size]
      taken[chosen] = True
      rows = slice(filled, filled + size)
      ratings.user_index[rows] = user
      ratings.movie_index[rows] = chosen
      relative = (affinity[chosen] - affinity.mean()) / (affinity.std() + 1e-9)
      ratings.score[rows] = _rating_score(rng, relative, audience.rating_bias[user],
                                          catalogue.quality[chosen])
      when_rated = np.maximum(rng.uniform(lo, hi, size), catalogue.release_time[chosen])
      ratings.timestamp[rows] = _timestamps(when_rated)
      filled += size
  return ratings


def _split_evenly(count: int, parts: int) -> list[int]:
  parts = min(parts, count)
  return [count // parts + (index < count % parts) for index in range(parts)]


def _taste(audience: _Audience, user, when):
  """The user's taste at `when` (window units); user, when: scalars, or [batch] and [batch, 1]."""
  return audience.vectors[user] + (when - 0.5) * audience.drift[user]


def _choice_logits(affinity, base_logit, trend, release_time, when):
  """How likely a user is to rate each movie at `when`: taste, popularity (trending up or down),
  and a penalty before the movie's release. Arrays broadcast: [movies], or [batch, pool] with
  when [batch, 1]."""
  popularity = base_logit + (when - 0.5) * trend
  unreleased = release_time > when
  return _AFFINITY_SCALE * affinity + popularity - _PRE_RELEASE_PENALTY * unreleased


def _rating_score(rng: np.random.Generator, relative: np.ndarray, rating_bias,
                  quality: np.ndarray) -> np.ndarray:
  """The latent rating, about 1..5: rises with how much more the user likes this movie than
  the average one (`relative`, in standard deviations of the user's affinities), plus the user's
  bias, the movie's quality and noise. _whole_stars and _half_stars round it."""
  return (2.9 + 0.7 * relative + rating_bias + quality
          + rng.normal(scale=0.6, size=len(relative)))


def _timestamps(when: np.ndarray) -> np.ndarray:
  return START_TIMESTAMP + np.floor(when * SPAN_SECONDS).astype(np.int64)


def _whole_stars(score: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(score), 1, 5).astype(np.int64)


def _half_stars(score: np.ndarray) -> np.ndarray:
  """0.5..5.0 in half stars, the CSV family's scale: the nearest half star, so the same score
  reads 3.5 where whole stars round it to 4 (or 3)."""
  return np.clip(np.rint(2 * score) / 2, 0.5, 5.0)


# The batched sampler's sizes. A pool of at least _POOL_MIN candidates, and _POOL_PER_PICK per
# movie a user picks in the slice, keeps the tail sample rich enough for users of rare tastes;
# _BATCH_CELLS bounds a batch's [users, pool] arrays (2 MB each; 128 users at the smallest pool:
# fewer users sharing one tail sample, see below, at little cost in speed); _CHUNK_USERS users'
# ratings are sorted and written together (bounds the ratings held: ~1.2M at ml-25m's 154 a user).
_POOL_MIN = 2048
_POOL_PER_PICK = 8
_BATCH_CELLS = 1 << 18
_CHUNK_USERS = 8192


def _sample_ratings_in_pools(rng: np.random.Generator, catalogue: _Catalogue,
                             audience: _Audience, counts: np.ndarray) -> Iterator[_Ratings]:
  """The same choice and rating models as _sample_ratings, batched so that ml-25m's shape
  (62k movies, 162k users, 25M ratings) takes a minute or two, not hours; yields the ratings of
  _CHUNK_USERS consecutive users at a time, sorted by user then movie (the CSV files' order), so
  memory stays bounded however many ratings are asked for.

  Why it is fast: users of similar activity are scored together, and per time slice they choose
  among a pool of candidates instead of the whole catalogue (_candidate_pool): the most popular
  movies, which get most ratings, and an even sample of the others by popularity rank, whose
  logits are raised by log(1 / sampling rate) so that, in expectation, they keep their share
  of the ratings (the sampled softmax's correction). A catalogue no bigger than the pool is
  scored whole: then the draws follow exactly _sample_ratings' distribution (not its bytes).
  The rating model needs the mean and spread of the user's affinity over the whole catalogue:
  they come exactly from the catalogue's mean vector and covariance.

  The approximation's trace: in one slice, the users of one batch (128 at most) see the same
  sample of less popular movies, so those movies' raters cluster a little more than under the
  exact sampler, and fewer distinct ones get rated (at 2,000 users and 20,000 movies, 86% of the
  movies against 92%; the shares of ratings by popularity rank stay within 0.02).
  """
  by_popularity = np.argsort(-catalogue.base_logit, kind='stable')
  moments = (catalogue.vectors.mean(axis=0),
             np.cov(catalogue.vectors, rowvar=False, bias=True).reshape(LATENT_DIM, LATENT_DIM))
  for first in range(0, len(counts), _CHUNK_USERS):
    users = np.arange(first, min(first + _CHUNK_USERS, len(counts)))
    by_activity = users[np.argsort(counts[users], kind='stable')]
    blocks = []
    start = 0
    while start < len(by_activity):
      end = min(start + _BATCH_CELLS // _POOL_MIN, len(by_activity))
      heaviest = _split_evenly(int(counts[by_activity[end - 1]]), _SEGMENTS_PER_USER)[0]
      end = start + max(1, min(end - start, _BATCH_CELLS // _pool_size(heaviest)))
      batch = by_activity[start:end]
      blocks.append(_sample_batch(rng, catalogue, audience, batch, counts[batch],
                                  by_popularity, moments))
      start = end
    chunk = _Ratings.concatenate(blocks)
    yield chunk.take(np.lexsort((chunk.movie_index, chunk.user_index)))


def _pool_size(picks: int) -> int:
  return max(_POOL_MIN, _POOL_PER_PICK * picks)


def _sample_batch(rng: np.random.Generator, catalogue: _Catalogue, audience: _Audience,
                  users: np.ndarray, counts: np.ndarray, by_popularity: np.ndarray,
                  moments: tuple[np.ndarray, np.ndarray]) -> _Ratings:
  """A batch of users' ratings, slice by slice as _sample_ratings does for one user."""
  mean_vector, covariance = moments
  parts = np.minimum(counts, _SEGMENTS_PER_USER)  # _split_evenly, vectorised
  taken = np.zeros((len(users), len(catalogue.vectors)), bool)
  first, last = audience.window[users].T
  blocks = []
  for slice_index in range(_SEGMENTS_PER_USER):
    sizes = np.where(slice_index < parts,
                     counts // parts + (slice_index < counts % parts), 0)
    most = int(sizes.max())
    if most == 0:
      break
    lo = first + (last - first) * slice_index / _SEGMENTS_PER_USER
    hi = first + (last - first) * (slice_index + 1) / _SEGMENTS_PER_USER
    when = (lo + hi) / 2
    pool, log_weight = _candidate_pool(rng, by_popularity, _pool_size(most))
    taste = _taste(audience, users, when[:, None])  # [batch, LATENT_DIM]
    affinity = taste @ catalogue.vectors[pool].T  # [batch, pool]
    logits = _choice_logits(affinity, catalogue.base_logit[pool] + log_weight,
                            catalogue.trend[pool], catalogue.release_time[pool], when[:, None])
    # Gumbel-top-k as _sample_ratings, in float32 and negated: the smallest log(E) - logit,
    # E ~ Exp(1), -log(E) being Gumbel (4x faster to draw than rng.gumbel's float64).
    with np.errstate(divide='ignore'):  # E == 0: key -inf, drawn first (as a Gumbel of +inf)
      keys = (np.log(rng.standard_exponential(size=logits.shape, dtype=np.float32))
              - logits.astype(np.float32))
    keys[taken[:, pool]] = np.inf
    best = (np.argpartition(keys, most - 1, axis=1)[:, :most] if most < len(pool)
            else np.broadcast_to(np.arange(len(pool)), keys.shape))
    best = np.take_along_axis(
        best, np.argsort(np.take_along_axis(keys, best, axis=1), axis=1, kind='stable'), axis=1)
    row, rank = np.nonzero(np.arange(most) < sizes[:, None])  # each user's `size` best keys
    column = best[row, rank]
    movie = pool[column]
    taken[row, movie] = True
    spread = np.sqrt(np.einsum('bi,ij,bj->b', taste, covariance, taste))
    relative = (affinity[row, column] - taste[row] @ mean_vector) / (spread[row] + 1e-9)
    score = _rating_score(rng, relative, audience.rating_bias[users][row],
                          catalogue.quality[movie])
    when_rated = np.maximum(rng.uniform(lo[row], hi[row]), catalogue.release_time[movie])
    blocks.append(_Ratings(users[row], movie, score, _timestamps(when_rated)))
  return _Ratings.concatenate(blocks)


def _candidate_pool(rng: np.random.Generator, by_popularity: np.ndarray,
                    size: int) -> tuple[np.ndarray, np.ndarray]:
  """`size` distinct movies to choose among, and each one's log weight (the logit correction).

  The first half are the most popular movies (weight 1: they are always there); the second an
  evenly spaced sample of the rest by popularity rank, from a random offset, so each of the
  rest is in the pool with probability 1/step and, when it is, stands for step movies
  (log weight log(step)). A catalogue no bigger than `size` is the pool, all of weight 1.
  """
  if size >= len(by_popularity):
    return by_popularity, np.zeros(len(by_popularity))
  head = size // 2
  rest = by_popularity[head:]
  step = len(rest) / (size - head)
  picks = np.minimum((rng.uniform(0, step) + step * np.arange(size - head)).astype(np.int64),
                     len(rest) - 1)
  pool = np.concatenate([by_popularity[:head], rest[picks]])
  return pool, np.concatenate([np.zeros(head), np.full(size - head, np.log(step))])


# --------------------------------------------------------------------------------------------
# Writing the raw formats. Each writer takes (folder, rng, catalogue, audience, ratings); the
# CSV writer's ratings arrive as a stream of blocks (_sample_ratings_in_pools).


def _write_ml100k(folder: pathlib.Path, rng: np.random.Generator, catalogue: _Catalogue,
                  audience: _Audience, ratings: _Ratings) -> None:
  order = rng.permutation(len(ratings.user_index))  # the real u.data is in no order
  stars = _whole_stars(ratings.score)
  _write_lines(folder / 'u.data', (
      f'{ratings.user_index[i] + 1}\t{ratings.movie_index[i] + 1}\t{stars[i]}\t'
      f'{ratings.timestamp[i]}' for i in order.tolist()))
  _write_lines(folder / 'u.item', (
      f'{movie + 1}|{title}|01-Jan-{year}|||{_genre_flags(genre_ids)}'
      for movie, (title, year, genre_ids) in enumerate(zip(
          catalogue.titles, catalogue.years.tolist(), catalogue.genre_ids))))
  _write_lines(folder / 'u.user', (
      f'{user + 1}|{age}|{gender}|{_ML100K_OCCUPATIONS[occupation]}|{_zip_code(user)}'
      for user, (age, gender, occupation) in enumerate(zip(
          audience.ages.tolist(), audience.genders, audience.occupation_ids.tolist()))))
  _write_lines(folder / 'u.genre',
               (f'{name}|{index}' for index, name in enumerate(movielens.ML100K_GENRES)))


def _genre_flags(genre_ids: tuple[int, ...]) -> str:
  """u.item's 0/1 columns; column 0 is 'unknown', so synthetic genre i is column i + 1."""
  flags = ['0'] * len(movielens.ML100K_GENRES)
  for genre in genre_ids:
    flags[genre + 1] = '1'
  return '|'.join(flags)


def _write_ml1m(folder: pathlib.Path, rng: np.random.Generator, catalogue: _Catalogue,
                audience: _Audience, ratings: _Ratings) -> None:
  del rng  # ratings.dat is grouped by user and in time order, as in the real file
  order = np.lexsort((ratings.timestamp, ratings.user_index))
  stars = _whole_stars(ratings.score)
  _write_lines(folder / 'ratings.dat', (
      f'{ratings.user_index[i] + 1}::{ratings.movie_index[i] + 1}::{stars[i]}::'
      f'{ratings.timestamp[i]}' for i in order.tolist()))
  _write_lines(folder / 'movies.dat', (
      f"{movie + 1}::{title}::{_genre_list(genre_ids)}"
      for movie, (title, genre_ids) in enumerate(zip(catalogue.titles, catalogue.genre_ids))))
  _write_lines(folder / 'users.dat', (
      f'{user + 1}::{gender}::{_age_group(age)}::{occupation}::{_zip_code(user)}'
      for user, (age, gender, occupation) in enumerate(zip(
          audience.ages.tolist(), audience.genders, audience.occupation_ids.tolist()))))


def _genre_list(genre_ids: tuple[int, ...], names=_GENRES) -> str:
  """movies.dat's and movies.csv's genre field: names joined by '|'."""
  return '|'.join(names[genre] for genre in genre_ids)


def _age_group(age: int) -> int:
  return max(group for group in _ML1M_AGE_GROUPS if group <= max(age, 1))


def _zip_code(user: int) -> str:
  """A stable 5-digit code; derived from the id so it needs no random draws."""
  return f'{(user * 7919 + 10007) % 90000 + 10000:05d}'


# The CSV family's quirks, reproduced so its reader meets them in tests: genre names as today's
# releases spell them, some titles with a double quote (RFC 4180 doubles it inside a quoted
# field) or with an alternate title beyond latin-1 (the files are UTF-8), some movies with no
# genres, and users who only ever give whole stars, as many real users do (so half stars are a
# minority of the ratings, as in the real files). Titles with ', The' hold commas already.
_CSV_GENRES = tuple('Children' if genre == "Children's" else genre for genre in _GENRES)
_CSV_QUOTED_SERIES = ('Great Performances', 'Masterpiece Theatre', 'Late Show')
_CSV_ALTERNATE_TITLES = ('Tōkyō no Yoru', 'Ночной город', 'Łódź nocą', 'Νυχτερινή πόλη',
                         '夜の港', 'Şehir Işıkları')
_CSV_QUOTED_SHARE = 0.01
_CSV_ALTERNATE_SHARE = 0.02
_CSV_NO_GENRES_SHARE = 0.02
_CSV_WHOLE_STAR_USERS = 0.45
_CSV_STAR_TEXT = tuple(f'{stars / 2:.1f}' for stars in range(11))  # index: 2 * stars
_WRITE_CHUNK_LINES = 1 << 16  # lines formatted and written at a time


def _write_csv(folder: pathlib.Path, rng: np.random.Generator, catalogue: _Catalogue,
               audience: _Audience, ratings) -> None:
  """movies.csv, then ratings.csv streamed from the sampler (grouped by user, by movie within
  a user, as in ml-25m). The quirks are drawn first: the ratings' draws follow them."""
  titles = _csv_titles(rng, catalogue.titles)
  no_genres = _some(rng, len(titles), _CSV_NO_GENRES_SHARE)
  whole_stars_only = rng.random(len(audience.vectors)) < _CSV_WHOLE_STAR_USERS
  _write_lines(folder / 'movies.csv', _with_header('movies', (
      f'{movie + 1},{_csv_field(title)},'
      f'{movielens.CSV_NO_GENRES if no_genres[movie] else _genre_list(genre_ids, _CSV_GENRES)}'
      for movie, (title, genre_ids) in enumerate(zip(titles, catalogue.genre_ids)))),
      encoding='utf-8')
  _write_lines(folder / 'ratings.csv', _with_header('ratings', (
      line for block in ratings
      for start in range(0, len(block.user_index), _WRITE_CHUNK_LINES)
      for line in _csv_rating_lines(block.take(slice(start, start + _WRITE_CHUNK_LINES)),
                                    whole_stars_only))),
      encoding='utf-8')


def _csv_titles(rng: np.random.Generator, titles: list[str]) -> list[str]:
  """The titles with the CSV quirks: '"Late Show" Velvet Road (1997)' and
  'Velvet Road (Ночной город) (1997)'. Titles stay distinct: generated words hold no quotes or
  parentheses, so each change can be undone."""
  quoted = _some(rng, len(titles), _CSV_QUOTED_SHARE)
  alternate = _some(rng, len(titles), _CSV_ALTERNATE_SHARE)
  series = rng.integers(len(_CSV_QUOTED_SERIES), size=len(titles))
  alternate_title = rng.integers(len(_CSV_ALTERNATE_TITLES), size=len(titles))
  changed = []
  for movie, title in enumerate(titles):
    if alternate[movie]:
      words, year = title.rsplit(' (', 1)
      title = f'{words} ({_CSV_ALTERNATE_TITLES[alternate_title[movie]]}) ({year}'
    if quoted[movie]:
      title = f'"{_CSV_QUOTED_SERIES[series[movie]]}" {title}'
    changed.append(title)
  return changed


def _some(rng: np.random.Generator, count: int, share: float) -> np.ndarray:
  """A random `share` of `count` items, and at least one, so small datasets show the quirk."""
  chosen = rng.random(count) < share
  chosen[rng.integers(count)] = True
  return chosen


def _csv_field(text: str) -> str:
  """RFC 4180: a field holding a comma, a double quote or a line break is quoted, and its
  double quotes doubled."""
  if any(special in text for special in ',"\r\n'):
    return '"' + text.replace('"', '""') + '"'
  return text


def _csv_rating_lines(block: _Ratings, whole_stars_only: np.ndarray) -> list[str]:
  """ratings.csv's lines for a block: 'userId,movieId,rating,timestamp', e.g. '1,307,3.5,...'."""
  stars = np.where(whole_stars_only[block.user_index], _whole_stars(block.score),
                   _half_stars(block.score))
  star_text = [_CSV_STAR_TEXT[index] for index in np.rint(2 * stars).astype(np.int64).tolist()]
  return [f'{user},{movie},{text},{timestamp}' for user, movie, text, timestamp in zip(
      (block.user_index + 1).tolist(), (block.movie_index + 1).tolist(), star_text,
      block.timestamp.tolist())]


def _with_header(kind: str, lines: Iterable[str]) -> Iterator[str]:
  yield movielens.CSV_HEADERS[kind]
  yield from lines


def _write_lines(path: pathlib.Path, lines: Iterable[str], encoding: str = 'latin-1') -> None:
  """Writes lines ending in '\\n' (GroupLens' files are latin-1, the CSV family's UTF-8), a
  chunk at a time: millions of lines never sit in memory as one string."""
  lines = iter(lines)
  with open(path, 'wb') as out:
    while chunk := list(itertools.islice(lines, _WRITE_CHUNK_LINES)):
      out.write(''.join(f'{line}\n' for line in chunk).encode(encoding))


# Per format: the sampler (the older formats keep the exact one, so their files stay
# byte-identical) and the writer.
_FORMATS = {
    'ml-100k': (_sample_ratings, _write_ml100k),
    'ml-1m': (_sample_ratings, _write_ml1m),
    'csv': (_sample_ratings_in_pools, _write_csv),
}


def _check_replaceable(out_dir: pathlib.Path) -> None:
  """Only a folder of dataset files may be replaced; never delete someone's other files."""
  if not out_dir.exists():
    return
  if not out_dir.is_dir():
    raise FileExistsError(f'{out_dir} exists and is not a folder')
  others = sorted(p.name for p in out_dir.iterdir() if p.name not in _DATASET_FILE_NAMES)
  if others:
    raise FileExistsError(
        f'{out_dir} holds files that are not MovieLens dataset files ({", ".join(others[:5])}); '
        'choose an empty or new folder')


def _publish(staging: pathlib.Path, out_dir: pathlib.Path) -> None:
  """Moves the finished dataset into place, swapping out a previous one if present."""
  if not out_dir.exists():
    os.replace(staging, out_dir)
    return
  _check_replaceable(out_dir)
  trash = pathlib.Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f'.{out_dir.name}.old-'))
  try:
    os.replace(out_dir, trash / 'previous')
    os.replace(staging, out_dir)
  finally:
    shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Command line.


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m components.ingest.synthetic',
      description='Write a synthetic MovieLens-format dataset.')
  parser.add_argument('out_dir', type=pathlib.Path, help='folder to create (or replace)')
  parser.add_argument('--num-users', type=int, default=200)
  parser.add_argument('--num-movies', type=int, default=300)
  parser.add_argument('--num-ratings', type=int, default=20_000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--format', dest='fmt', choices=movielens.FORMATS, default='ml-100k')
  args = parser.parse_args(argv)
  started = time.perf_counter()
  try:
    out_dir = generate(args.out_dir, num_users=args.num_users, num_movies=args.num_movies,
                       num_ratings=args.num_ratings, seed=args.seed, fmt=args.fmt)
  except (ValueError, FileExistsError) as error:
    parser.error(str(error))
  print(f'wrote {args.fmt} synthetic dataset to {out_dir}: {args.num_users} users, '
        f'{args.num_movies} movies, {args.num_ratings} ratings '
        f'(seed {args.seed}, {time.perf_counter() - started:.1f}s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
