"""Ranking metrics and the baselines of make bench-quality, on hand-made ratings."""
import numpy as np
import pytest

from pipeline.baselines import (Ratings, baseline_accuracy, bias_baseline_rmse, ease_weights,
                                sequential_baseline_accuracy, top_k_accuracy)


def test_top_k_accuracy_with_and_without_the_seen_movies():
  scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
  labels = np.array([2, 3, -1])  # rank 2, rank 3, a movie outside the catalogue
  seen = [np.array([0, 1]), np.array([0]), np.array([], np.int64)]
  metrics = top_k_accuracy([(scores, labels, seen)], ks=(1, 3))
  assert metrics['top_1_accuracy'] == 0 and metrics['top_3_accuracy'] == pytest.approx(1 / 3)
  # Without their training movies: a's label ranks first, b's third.
  assert metrics['top_1_accuracy_unseen'] == pytest.approx(1 / 3)
  assert metrics['top_3_accuracy_unseen'] == pytest.approx(2 / 3)


def test_a_tie_with_the_label_is_not_a_hit():
  # A model that scores every movie alike has learned nothing: it must not hit every time.
  seen = [np.array([1]), np.array([], np.int64)]
  flat = top_k_accuracy([(np.zeros([2, 5]), np.array([0, 4]), seen)], ks=(1, 4))
  assert flat['top_1_accuracy'] == 0 and flat['top_1_accuracy_unseen'] == 0
  assert flat['top_4_accuracy'] == 0 and flat['top_4_accuracy_unseen'] == 0.5  # 4 left for row 0
  # A seen label is still ranked among the unseen movies.
  seen_label = top_k_accuracy([(np.array([[0.1, 0.9, 0.5]]), np.array([1]), [np.array([1, 2])])],
                              ks=(1,))
  assert seen_label['top_1_accuracy_unseen'] == 1


def test_ease_learns_item_to_item_co_occurrence():
  # Movies 0 and 1 always go together, 2 and 3 too.
  matrix = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0]],
                    np.float32)
  weights = ease_weights(matrix, l2=0.5)
  assert np.all(np.diag(weights) == 0)
  assert weights[0, 1] > 0.5 and abs(weights[0, 2]) < 0.1


def test_baselines_score_the_eval_split():
  train = Ratings([b'u1', b'u1', b'u2', b'u2', b'u3'], [b'm1', b'm2', b'm1', b'm2', b'm3'])
  eval_ratings = Ratings([b'u3', b'u1'], [b'm3', b'm3'])
  rows = baseline_accuracy(train, eval_ratings, ease_l2=0.1, ks=(1,))
  # Most popular ranks m1/m2 first: m3 is only the top unseen movie for u1.
  assert rows['most-popular']['top_1_accuracy'] == 0
  assert rows['most-popular']['top_1_accuracy_unseen'] == 0.5
  assert set(rows) == {'most-popular', 'EASE'}


def test_markov_predicts_the_movie_that_followed_the_last_one():
  # In training, m2 always follows m1 and m3 follows m2; m4 is the most popular next movie.
  train = Ratings([b'u'] * 6, [b'm2', b'm3', b'm4', b'm4', b'm4', b'm2'],
                  contexts=[[b'm1'], [b'm1', b'm2'], [b'm5'], [b'm6'], [b'm7'], [b'm9', b'm1']])
  eval_ratings = Ratings([b'v', b'w'], [b'm2', b'm3'], contexts=[[b'm1'], [b'm4', b'm2']])
  rows = sequential_baseline_accuracy(train, eval_ratings, ks=(1,))
  assert rows['Markov']['top_1_accuracy'] == 1.0
  assert rows['most-popular']['top_1_accuracy'] == 0.0  # m4 both times
  # Excluding the context: w's m2 and m4 removed, Markov still ranks m3 first.
  assert rows['Markov']['top_1_accuracy_unseen'] == 1.0


def test_bias_baseline_learns_user_and_movie_offsets():
  users = [b'a', b'a', b'b', b'b', b'c', b'c'] * 5
  movies = [b'x', b'y', b'x', b'y', b'x', b'y'] * 5
  ratings = [5.0, 4.0, 3.0, 2.0, 4.0, 3.0] * 5  # user offsets +1/-1/0, x rated 1 above y
  train = Ratings(users, movies, ratings)
  exact = bias_baseline_rmse(train, Ratings([b'a', b'b'], [b'y', b'x'], [4.0, 3.0]), l2=0.0)
  assert exact == pytest.approx(0.0, abs=1e-6)
  # An unknown user and movie get the global mean; predictions are clipped to 1..5.
  assert bias_baseline_rmse(train, Ratings([b'z'], [b'q'], [3.5]), l2=0.0) == pytest.approx(0.0)


def test_seen_movies_outside_the_catalogue_exclude_nothing():
  # m4 is the most frequent next movie, then m3. The eval context's movie was never a label:
  # it is in no ranking, so excluding it must leave m4 first (not drop the last column).
  train = Ratings([b'u'] * 6, [b'm4', b'm4', b'm4', b'm3', b'm3', b'm2'],
                  contexts=[[b'm1']] * 6)
  eval_ratings = Ratings([b'v'], [b'm3'], contexts=[[b'm9']])
  popular = sequential_baseline_accuracy(train, eval_ratings, ks=(1, 2))['most-popular']
  assert popular['top_1_accuracy'] == popular['top_1_accuracy_unseen'] == 0.0
  assert popular['top_2_accuracy_unseen'] == 1.0
