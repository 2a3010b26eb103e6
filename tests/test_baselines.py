"""Ranking metrics and the baselines of make bench-quality, on hand-made ratings and timelines."""
import math

import numpy as np
import pytest

from pipeline.baselines import (Ratings, baseline_accuracy, bias_baseline_rmse, ease_scorer,
                                ease_weights, ndcg, seen_rows, sequential_baseline_accuracy,
                                top_k_accuracy, user_histories)


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


def test_ndcg_of_a_single_label_at_a_known_rank():
  assert list(ndcg(np.array([0, 1, 3, 9, 10, np.inf]), 10)) == pytest.approx(
      [1.0, 1 / math.log2(3), 1 / math.log2(5), 1 / math.log2(11), 0.0, 0.0])
  # Row 0: the label ranks 4th (3 movies ahead), 2nd once the seen movies 0 and 1 are
  # removed; row 1: ranks 12th, a miss at 10; row 2: outside the catalogue.
  scores = np.array([np.linspace(1.0, 0.0, 15)] * 3)
  labels = np.array([3, 11, -1])
  seen = [np.array([0, 1]), np.array([], np.int64), np.array([], np.int64)]
  metrics = top_k_accuracy([(scores, labels, seen)], ks=(10,), ndcg_ks=(10, 20))
  assert metrics['ndcg_10'] == pytest.approx(1 / math.log2(5) / 3)
  assert metrics['ndcg_10_unseen'] == pytest.approx(1 / math.log2(3) / 3)
  assert metrics['ndcg_20'] == pytest.approx((1 / math.log2(5) + 1 / math.log2(13)) / 3)
  assert metrics['top_10_accuracy'] == metrics['top_10_accuracy_unseen'] == pytest.approx(1 / 3)


# Leave-last-out on hand-made timelines (context window 2): u's timeline is m1 m2 m3 m4 m5,
# m5 held out; w's is m6 m7, both in its only (eval) example, so w has no training history.
LEAVE_LAST_OUT_TRAIN = Ratings(
    [b'u', b'u', b'u', b'x'], [b'm2', b'm3', b'm4', b'm5'],
    contexts=[[b'm1'], [b'm1', b'm2'], [b'm2', b'm3'], [b'm4']])
LEAVE_LAST_OUT_EVAL = Ratings([b'u', b'w'], [b'm5', b'm7'],
                              contexts=[[b'm3', b'm4'], [b'm6']])


def test_the_seen_movies_of_leave_last_out_are_the_whole_history():
  assert user_histories(LEAVE_LAST_OUT_TRAIN) == {b'u': [b'm1', b'm2', b'm3', b'm4'],
                                                  b'x': [b'm4', b'm5']}
  movie_index = {movie: i for i, movie in enumerate([b'm1', b'm2', b'm3', b'm4', b'm5', b'm6'])}
  whole = seen_rows(LEAVE_LAST_OUT_EVAL, LEAVE_LAST_OUT_TRAIN, movie_index, whole_history=True)
  assert sorted(whole[0]) == [0, 1, 2, 3]  # every movie of u's training examples, m1 included
  assert list(whole[1]) == [5]  # no training history: its context (m7 is not in the index)
  window = seen_rows(LEAVE_LAST_OUT_EVAL, LEAVE_LAST_OUT_TRAIN, movie_index)
  assert sorted(window[0]) == [2, 3]  # the tutorial's protocol: the context window alone
  # Rating examples: the user's training movies, whole_history or not.
  ratings = Ratings([b'a', b'a', b'b'], [b'm1', b'm2', b'm3'])
  for whole_history in (False, True):
    assert [sorted(row) for row in seen_rows(Ratings([b'a', b'c'], [b'm3', b'm1']), ratings,
                                             movie_index, whole_history)] == [[0, 1], []]


# Two groups of users: A's histories hold m1, m2 and m7; B's (more of them) m4, m5 and m7. v
# watched m1 then m7; held out: m2. Its context window (m7) points at B, its history at A.
TIMELINES_TRAIN = Ratings(
    [b'a1', b'a1', b'a2', b'a2', b'b1', b'b1', b'b2', b'b2', b'b3', b'b3', b'v'],
    [b'm7', b'm2', b'm2', b'm1', b'm7', b'm5', b'm5', b'm4', b'm4', b'm7', b'm7'],
    contexts=[[b'm1'], [b'm1', b'm7'], [b'm7'], [b'm7', b'm2'], [b'm4'], [b'm4', b'm7'],
              [b'm7'], [b'm7', b'm5'], [b'm5'], [b'm5', b'm4'], [b'm1']])
TIMELINES_EVAL = Ratings([b'v'], [b'm2'], contexts=[[b'm7']])


def test_ease_on_timelines_ranks_the_movie_that_co_occurs_with_the_history_first():
  movie_index = {movie: i for i, movie in enumerate([b'm1', b'm2', b'm4', b'm5', b'm7'])}
  seen = seen_rows(TIMELINES_EVAL, TIMELINES_TRAIN, movie_index, whole_history=True)
  scores = ease_scorer(TIMELINES_TRAIN, seen, movie_index, l2=0.5)(slice(0, 1))[0]
  unseen = [movie for movie in movie_index if movie_index[movie] not in seen[0]]
  assert max(unseen, key=lambda movie: scores[movie_index[movie]]) == b'm2'
  rows = sequential_baseline_accuracy(TIMELINES_TRAIN, TIMELINES_EVAL, ks=(1,), ease_l2=0.5,
                                      whole_history=True)
  assert set(rows) == {'most-popular', 'Markov', 'EASE'}
  assert rows['EASE']['top_1_accuracy_unseen'] == 1.0
  assert rows['EASE']['ndcg_10_unseen'] == 1.0
  assert rows['most-popular']['top_1_accuracy_unseen'] == 0.0  # m4 and m5 outnumber m2
  # From the context window alone, EASE follows m7 to the larger group B: a miss.
  window = sequential_baseline_accuracy(TIMELINES_TRAIN, TIMELINES_EVAL, ks=(1,), ease_l2=0.5)
  assert window['EASE']['top_1_accuracy_unseen'] == 0.0
  # Without ease_l2, the tutorial protocol's baselines alone.
  assert set(sequential_baseline_accuracy(TIMELINES_TRAIN, TIMELINES_EVAL, ks=(1,))) == {
      'most-popular', 'Markov'}
