"""Synthetic MovieLens-shaped datasets, written in the raw GroupLens formats.

Why: the pipeline must run (tests, CI, laptops without network) without the real archive, and a
dataset of random noise would let a broken model look as good as a working one. So the data
has structure a two-tower retrieval model can learn:

* users and movies have latent taste vectors; movies sit in clusters, one per genre, so genres
  (and genre-themed title words) carry signal about the latent space;
* which movie a user rates is drawn from softmax(affinity + popularity), popularity being
  Zipf-like, so a few movies get most ratings as in the real data;
* the rating (1..5) rises with the user's affinity for the movie;
* over the ~6 months the data spans, tastes drift, popularity trends up or down, and some
  movies are released part-way through, so a time-based split sees a real shift.

Deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import shutil
import sys
import tempfile
import time

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
  stars: np.ndarray  # int 1..5
  timestamp: np.ndarray  # int seconds since the epoch


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
  ratings = _sample_ratings(rng, catalogue, audience, counts)
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f'.{out_dir.name}.tmp-'))
  try:
    writer = _write_ml100k if fmt == 'ml-100k' else _write_ml1m
    writer(staging, rng, catalogue, audience, ratings)
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
# Sampling ratings.


def _sample_ratings(rng: np.random.Generator, catalogue: _Catalogue, audience: _Audience,
                    counts: np.ndarray) -> _Ratings:
  """Per user and time slice: distinct movies via Gumbel-top-k on softmax(affinity + popularity).

  Gumbel-top-k equals drawing from the softmax without replacement, in one vectorised step;
  movies taken in an earlier slice are masked out, so no (user, movie) pair repeats.
  """
  total = int(counts.sum())
  ratings = _Ratings(np.empty(total, np.int64), np.empty(total, np.int64),
                     np.empty(total, np.int64), np.empty(total, np.int64))
  num_movies = len(catalogue.vectors)
  filled = 0
  for user, count in enumerate(counts):
    taken = np.zeros(num_movies, bool)
    first, last = audience.window[user]
    for slice_index, size in enumerate(_split_evenly(count, _SEGMENTS_PER_USER)):
      lo = first + (last - first) * slice_index / _SEGMENTS_PER_USER
      hi = first + (last - first) * (slice_index + 1) / _SEGMENTS_PER_USER
      affinity, logits = _logits(catalogue, audience, user, (lo + hi) / 2)
      logits[taken] = -np.inf
      keys = logits + rng.gumbel(size=num_movies)
      chosen = np.argpartition(-keys, size - 1)[:size]
      taken[chosen] = True
      rows = slice(filled, filled + size)
      ratings.user_index[rows] = user
      ratings.movie_index[rows] = chosen
      ratings.stars[rows] = _stars(rng, affinity, chosen, catalogue, audience, user)
      when = np.maximum(rng.uniform(lo, hi, size), catalogue.release_time[chosen])
      ratings.timestamp[rows] = START_TIMESTAMP + np.floor(when * SPAN_SECONDS).astype(np.int64)
      filled += size
  return ratings


def _split_evenly(count: int, parts: int) -> list[int]:
  parts = min(parts, count)
  return [count // parts + (index < count % parts) for index in range(parts)]


def _logits(catalogue: _Catalogue, audience: _Audience, user: int,
            when: float) -> tuple[np.ndarray, np.ndarray]:
  """Affinity of the user's taste at `when` for every movie, and the choice logits."""
  taste = audience.vectors[user] + (when - 0.5) * audience.drift[user]
  affinity = catalogue.vectors @ taste
  popularity = catalogue.base_logit + (when - 0.5) * catalogue.trend
  unreleased = catalogue.release_time > when
  logits = _AFFINITY_SCALE * affinity + popularity - _PRE_RELEASE_PENALTY * unreleased
  return affinity, logits


def _stars(rng: np.random.Generator, affinity: np.ndarray, chosen: np.ndarray,
           catalogue: _Catalogue, audience: _Audience, user: int) -> np.ndarray:
  """1..5 stars rising with how much more the user likes this movie than the average one."""
  relative = (affinity[chosen] - affinity.mean()) / (affinity.std() + 1e-9)
  score = (2.9 + 0.7 * relative + audience.rating_bias[user] + catalogue.quality[chosen]
           + rng.normal(scale=0.6, size=len(chosen)))
  return np.clip(np.rint(score), 1, 5).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Writing the raw formats.


def _write_ml100k(folder: pathlib.Path, rng: np.random.Generator, catalogue: _Catalogue,
                  audience: _Audience, ratings: _Ratings) -> None:
  order = rng.permutation(len(ratings.user_index))  # the real u.data is in no order
  _write_lines(folder / 'u.data', (
      f'{ratings.user_index[i] + 1}\t{ratings.movie_index[i] + 1}\t{ratings.stars[i]}\t'
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
  _write_lines(folder / 'ratings.dat', (
      f'{ratings.user_index[i] + 1}::{ratings.movie_index[i] + 1}::{ratings.stars[i]}::'
      f'{ratings.timestamp[i]}' for i in order.tolist()))
  _write_lines(folder / 'movies.dat', (
      f"{movie + 1}::{title}::{'|'.join(_GENRES[genre] for genre in genre_ids)}"
      for movie, (title, genre_ids) in enumerate(zip(catalogue.titles, catalogue.genre_ids))))
  _write_lines(folder / 'users.dat', (
      f'{user + 1}::{gender}::{_age_group(age)}::{occupation}::{_zip_code(user)}'
      for user, (age, gender, occupation) in enumerate(zip(
          audience.ages.tolist(), audience.genders, audience.occupation_ids.tolist()))))


def _age_group(age: int) -> int:
  return max(group for group in _ML1M_AGE_GROUPS if group <= max(age, 1))


def _zip_code(user: int) -> str:
  """A stable 5-digit code; derived from the id so it needs no random draws."""
  return f'{(user * 7919 + 10007) % 90000 + 10000:05d}'


def _write_lines(path: pathlib.Path, lines) -> None:
  with open(path, 'wb') as out:
    out.write(''.join(f'{line}\n' for line in lines).encode('latin-1'))


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
