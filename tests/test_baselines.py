"""Ranking metrics and the baselines of make bench-quality, on hand-made ratings."""
import numpy as np
import pytest

from pipeline.baselines import Ratings, baseline_accuracy, ease_weights, top_k_accuracy


def test_top_k_accuracy_with_and_without_the_users_training_movies():
  scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
  labels = np.array([2, 3, -1])  # rank 2, rank 3, a movie outside the catalogue
  seen = {b'a': np.array([0, 1]), b'b': np.array([0])}
  metrics = top_k_accuracy([(scores, labels, [b'a', b'b', b'c'])], seen, ks=(1, 3))
  assert metrics['top_1_accuracy'] == 0 and metrics['top_3_accuracy'] == pytest.approx(1 / 3)
  # Without their training movies: a's label ranks first, b's third.
  assert metrics['top_1_accuracy_unseen'] == pytest.approx(1 / 3)
  assert metrics['top_3_accuracy_unseen'] == pytest.approx(2 / 3)


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
