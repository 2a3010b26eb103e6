"""The synthetic generator: deterministic, readable by the readers, and worth learning from."""

import collections
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from components import features
from components.ingest import movielens, synthetic

ML100K_FILES = ('u.data', 'u.genre', 'u.item', 'u.user')
ML1M_FILES = ('movies.dat', 'ratings.dat', 'users.dat')
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def file_bytes(folder):
  return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope='module')
def realistic(tmp_path_factory):
  """About as sparse as the real ml-100k (~9% of pairs rated), where the structure shows."""
  folder = tmp_path_factory.mktemp('synthetic') / 'ml-100k'
  synthetic.generate(folder, num_users=400, num_movies=800, num_ratings=30_000, seed=3)
  movies = movielens.read_movies(folder)
  ratings = list(movielens.iter_ratings(folder))
  return folder, movies, ratings


# --------------------------------------------------------------------------------------------
# Files and determinism.


@pytest.mark.parametrize('fmt, names', [('ml-100k', ML100K_FILES), ('ml-1m', ML1M_FILES)])
def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, fmt, names):
  sizes = dict(num_users=40, num_movies=60, num_ratings=800, fmt=fmt)
  first = file_bytes(synthetic.generate(tmp_path / 'a', seed=7, **sizes))
  again = file_bytes(synthetic.generate(tmp_path / 'b', seed=7, **sizes))
  other = file_bytes(synthetic.generate(tmp_path / 'c', seed=8, **sizes))
  assert tuple(first) == names
  assert first == again
  ratings_file = movielens.FILE_NAMES[fmt]['ratings']
  assert other[ratings_file] != first[ratings_file]


@pytest.mark.parametrize('fmt', movielens.FORMATS)
def test_readers_read_it_back_with_the_requested_counts(tmp_path, fmt):
  folder = synthetic.generate(tmp_path / fmt, num_users=50, num_movies=80, num_ratings=1500,
                              seed=1, fmt=fmt)
  assert movielens.detect_format(folder) == fmt
  assert len(movielens.read_users(folder)) == 50
  movies = movielens.read_movies(folder)
  assert len(movies) == 80
  examples = list(movielens.iter_examples(folder))
  assert len(examples) == 1500
  assert {e[features.USER_RATING] for e in examples} <= {1.0, 2.0, 3.0, 4.0, 5.0}
  assert all(e[features.MOVIE_GENRES] for e in examples)
  assert all(re.fullmatch(r'.+ \((19|20)\d\d\)', movie.title) for movie in movies.values())


@pytest.mark.parametrize('fmt', movielens.FORMATS)
def test_each_pair_rated_once_and_every_user_rates_a_few(tmp_path, fmt):
  folder = synthetic.generate(tmp_path / fmt, num_users=60, num_movies=40, num_ratings=1200,
                              fmt=fmt)
  pairs = [(r.user_id, r.movie_id) for r in movielens.iter_ratings(folder)]
  assert len(pairs) == len(set(pairs)) == 1200
  per_user = collections.Counter(user for user, _ in pairs)
  assert len(per_user) == 60
  assert min(per_user.values()) >= synthetic.MIN_RATINGS_PER_USER


def test_ml1m_demographics_use_its_codes(tmp_path):
  folder = synthetic.generate(tmp_path / 'ml-1m', num_users=300, num_movies=20,
                              num_ratings=1500, fmt='ml-1m')
  users = movielens.read_users(folder).values()
  assert {user.age for user in users} <= {1, 18, 25, 35, 45, 50, 56}
  assert {user.occupation for user in users} <= set(movielens.ML1M_OCCUPATIONS)
  assert {user.gender for user in users} == {'M', 'F'}


def test_sizes_that_cannot_be_met_are_refused(tmp_path):
  with pytest.raises(ValueError, match='at most once'):
    synthetic.generate(tmp_path / 'x', num_users=2, num_movies=5, num_ratings=11)
  with pytest.raises(ValueError, match='at least 5'):
    synthetic.generate(tmp_path / 'x', num_users=10, num_movies=50, num_ratings=49)
  assert not (tmp_path / 'x').exists()


# --------------------------------------------------------------------------------------------
# Writing atomically.


def test_previous_dataset_is_replaced_and_nothing_is_left_beside_it(tmp_path):
  folder = tmp_path / 'data'
  synthetic.generate(folder, num_users=10, num_movies=20, num_ratings=100, seed=1)
  synthetic.generate(folder, num_users=12, num_movies=20, num_ratings=100, seed=2)
  assert len(movielens.read_users(folder)) == 12
  assert [p.name for p in tmp_path.iterdir()] == ['data']


def test_folder_with_other_files_is_refused_untouched(tmp_path):
  folder = tmp_path / 'data'
  folder.mkdir()
  (folder / 'notes.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='notes.txt'):
    synthetic.generate(folder, num_users=10, num_movies=20, num_ratings=100)
  assert [p.name for p in folder.iterdir()] == ['notes.txt']


def test_a_failed_write_leaves_no_half_written_dataset(tmp_path, monkeypatch):
  real_write_lines = synthetic._write_lines
  written = []

  def write_then_fail(path, lines):
    if written:
      raise OSError('disk full')
    written.append(path)
    real_write_lines(path, lines)

  monkeypatch.setattr(synthetic, '_write_lines', write_then_fail)
  with pytest.raises(OSError, match='disk full'):
    synthetic.generate(tmp_path / 'data', num_users=10, num_movies=20, num_ratings=100)
  assert written  # the first file was written before the failure ...
  assert list(tmp_path.iterdir()) == []  # ... yet neither it nor the folder remains


def test_command_line(tmp_path):
  completed = subprocess.run(
      [sys.executable, '-m', 'components.ingest.synthetic', str(tmp_path / 'cli'),
       '--num-users', '20', '--num-movies', '30', '--num-ratings', '300', '--seed', '4',
       '--format', 'ml-1m'],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  assert str(tmp_path / 'cli') in completed.stdout
  assert '20 users, 30 movies, 300 ratings' in completed.stdout
  assert len(list(movielens.iter_ratings(tmp_path / 'cli'))) == 300


# --------------------------------------------------------------------------------------------
# Structure a recommender can learn.


def test_popularity_is_skewed(realistic):
  _, movies, ratings = realistic
  counts = sorted(collections.Counter(r.movie_id for r in ratings).values(), reverse=True)
  top_tenth = sum(counts[:len(movies) // 10]) / len(ratings)
  assert top_tenth > 0.25  # uniform choice would give 0.10


def test_users_have_consistent_genre_taste(realistic):
  """Split each user's movies in two: the halves' genre mixes agree far more than strangers'.

  Popularity affects both halves of everyone alike, so only per-user taste (what a two-tower
  model learns) can make a user's halves more similar than two different users' halves.
  """
  _, movies, ratings = realistic
  genre_names = sorted({genre for movie in movies.values() for genre in movie.genres})
  by_user = collections.defaultdict(list)
  for rating in ratings:
    by_user[rating.user_id].append(rating.movie_id)

  def genre_mix(movie_ids):
    mix = np.zeros(len(genre_names))
    for movie_id in movie_ids:
      for genre in movies[movie_id].genres:
        mix[genre_names.index(genre)] += 1
    return mix / np.linalg.norm(mix)

  odd = np.array([genre_mix(ids[0::2]) for ids in by_user.values()])
  even = np.array([genre_mix(ids[1::2]) for ids in by_user.values()])
  same_user = np.mean(np.sum(odd * even, axis=1))
  other_user = np.mean(np.sum(odd * np.roll(even, 1, axis=0), axis=1))
  assert same_user > other_user + 0.15


def test_ratings_are_higher_for_movies_matching_the_users_taste(realistic):
  _, movies, ratings = realistic
  by_user = collections.defaultdict(list)
  for rating in ratings:
    by_user[rating.user_id].append(rating)
  gaps = []
  for user_ratings in by_user.values():
    genre_counts = collections.Counter(
        genre for r in user_ratings for genre in movies[r.movie_id].genres)
    favourite = genre_counts.most_common(1)[0][0]
    liked = [r.rating for r in user_ratings if favourite in movies[r.movie_id].genres]
    others = [r.rating for r in user_ratings if favourite not in movies[r.movie_id].genres]
    if liked and others:
      gaps.append(np.mean(liked) - np.mean(others))
  assert np.mean(gaps) > 0.15


def test_six_months_of_timestamps_with_popularity_drift(realistic):
  _, movies, ratings = realistic
  timestamps = np.array([r.timestamp for r in ratings])
  assert 150 <= (timestamps.max() - timestamps.min()) / 86400 <= 183
  movie_ids = np.array([r.movie_id for r in ratings])
  catalogue = sorted(movies)

  def popularity(rows):
    counts = collections.Counter(movie_ids[rows])
    vector = np.array([counts[movie_id] for movie_id in catalogue], float)
    return vector / np.linalg.norm(vector)

  third = len(ratings) // 3
  by_time = np.argsort(timestamps, kind='stable')
  shuffled = np.random.default_rng(0).permutation(len(ratings))
  early_vs_late = popularity(by_time[:third]) @ popularity(by_time[-third:])
  random_thirds = popularity(shuffled[:third]) @ popularity(shuffled[-third:])
  assert early_vs_late < random_thirds - 0.03


def test_timestamps_lie_inside_the_bounds_the_readers_accept(realistic):
  """1997-98, as the real ml-100k: after MovieLens began and long before now."""
  _, _, ratings = realistic
  assert movielens.EARLIEST_TIMESTAMP <= synthetic.START_TIMESTAMP
  assert synthetic.START_TIMESTAMP <= min(r.timestamp for r in ratings)
  assert max(r.timestamp for r in ratings) < synthetic.START_TIMESTAMP + synthetic.SPAN_SECONDS
  assert synthetic.START_TIMESTAMP + synthetic.SPAN_SECONDS < time.time()

def test_titles_share_words(realistic):
  _, movies, _ = realistic
  words = [word for movie in movies.values() for word in movie.title.split()[:-1]]
  assert len(set(words)) < len(words) / 5
  assert len({movie.title for movie in movies.values()}) == len(movies)
