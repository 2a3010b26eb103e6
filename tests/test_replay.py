"""make bench-replay (benchmarks/replay.py): the time cut, the replayed requests, the rankers
and their figures, on hand-made timelines and tiny stand-in serving models."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import plot, replay
from components.ingest import movielens, synthetic
from components.ingest.movielens import Rating
from pipeline import baselines

CUT = 100


@pytest.fixture
def timeline() -> replay.Replay:
  """u1 and u2 rated in the past; u1 comes back after the cut, u3 is new (m5: a new movie).

  past:    u1 m1@10 m2@20;  u2 m2@30 m4@40 m1@50
  future:  u1 m3@100;  u3 m2@110;  u3 m4@120;  u1 m5@130
  """
  ratings = [Rating('u1', 'm3', 4, 100), Rating('u2', 'm4', 3, 40), Rating('u1', 'm1', 5, 10),
             Rating('u3', 'm2', 2, 110), Rating('u2', 'm2', 4, 30), Rating('u3', 'm4', 5, 120),
             Rating('u1', 'm5', 1, 130), Rating('u2', 'm1', 4, 50), Rating('u1', 'm2', 3, 20)]
  return replay.make_replay(ratings, CUT)


# --- the replayed requests -----------------------------------------------------------------


def test_the_requests_are_the_future_ratings_in_time_order(timeline):
  assert list(zip(timeline.users, timeline.movies, timeline.times.tolist())) == [
      ('u1', 'm3', 100), ('u3', 'm2', 110), ('u3', 'm4', 120), ('u1', 'm5', 130)]
  assert [(r.user_id, r.movie_id) for r in timeline.past] == [
      ('u1', 'm1'), ('u1', 'm2'), ('u2', 'm2'), ('u2', 'm4'), ('u2', 'm1')]


def test_each_request_is_in_the_segment_of_its_user_at_that_moment(timeline):
  assert timeline.segments.tolist() == [replay.KNOWN, replay.NO_HISTORY,
                                        replay.NEW_WITH_HISTORY, replay.KNOWN]


def test_the_history_grows_with_the_replay(timeline):
  assert [timeline.history(i) for i in range(4)] == [
      ['m1', 'm2'], [], ['m2'], ['m1', 'm2', 'm3']]


def test_ratings_of_the_same_second_are_replayed_in_movie_id_order():
  same_second = replay.make_replay(
      [Rating('u', '10', 3, 200), Rating('u', '9', 3, 200), Rating('v', '5', 3, 50)], CUT)
  assert same_second.movies == ['9', '10']  # numeric ids by value, as TimelineGen orders them
  assert same_second.history(1) == ['9']


# --- the time cut and the past folder ------------------------------------------------------


def test_future_percent_replays_the_latest_share_of_the_ratings():
  cut = replay.cut_time(list(range(1_000_000_000, 1_000_000_100)), future_percent=20)
  assert cut == 1_000_000_080


def test_a_cut_date_is_midnight_utc():
  assert replay.cut_time([888_000_000, 893_000_000], cut_date='1998-03-01') == 888_710_400


def test_a_cut_date_outside_the_ratings_names_their_range():
  with pytest.raises(ValueError, match=r'1998-02-20 to 1998-04-19 \(UTC\)'):
    replay.cut_time([888_000_000, 893_000_000], cut_date='1999-01-01')


def test_a_cut_date_that_is_not_a_date_says_the_form_expected():
  with pytest.raises(ValueError, match='YYYY-MM-DD'):
    replay.cut_time([888_000_000, 893_000_000], cut_date='March 1998')


@pytest.mark.parametrize('fmt', movielens.FORMATS)
def test_the_past_folder_holds_no_rating_from_the_future(tmp_path, fmt):
  data = synthetic.generate(tmp_path / 'data', num_users=20, num_movies=30, num_ratings=300,
                            fmt=fmt)
  ratings = list(movielens.iter_ratings(data, fmt))
  cut = replay.cut_time([r.timestamp for r in ratings], future_percent=20)
  past = replay.write_past(data, fmt, ratings, cut, tmp_path / 'past')
  read_back = list(movielens.iter_ratings(past, fmt))  # the pipeline's readers accept it
  assert read_back == [r for r in ratings if r.timestamp < cut]
  assert movielens.read_movies(past, fmt) == movielens.read_movies(data, fmt)


def test_the_past_folder_leaves_out_files_the_readers_do_not_read(tmp_path):
  data = synthetic.generate(tmp_path / 'data', num_users=20, num_movies=30, num_ratings=300)
  (data / 'u1.base').write_bytes((data / 'u.data').read_bytes())  # ml-100k ships such splits
  ratings = list(movielens.iter_ratings(data))
  past = replay.write_past(data, 'ml-100k', ratings, ratings[0].timestamp, tmp_path / 'past')
  assert not (past / 'u1.base').exists() and (past / 'u.user').exists()


# --- metrics -------------------------------------------------------------------------------


def test_hits_at_known_ranks_give_known_hit_rates_and_ndcg():
  outcome = replay.Outcome(np.array([0, 5, 50, np.inf]), np.array([False, False, False, True]))
  figures = replay.metrics(outcome)
  assert figures['hr_10'] == 0.5 and figures['hr_100'] == 0.75
  assert figures['ndcg_10'] == pytest.approx((1 + 1 / math.log2(7)) / 4)
  assert figures['refused'] == 0.25 and figures['requests'] == 4


def test_the_report_gives_each_segment_and_week_its_own_figures():
  week = replay.WEEK_SECONDS
  weeks_apart = replay.make_replay(
      [Rating('u', 'm0', 3, 1), Rating('u', 'm1', 3, CUT), Rating('v', 'm2', 3, CUT + week),
       Rating('v', 'm3', 3, CUT + week + 1)], CUT)
  result = replay.report(replay.Outcome(np.array([0.0, 20.0, 2.0]), np.zeros(3, bool)),
                         weeks_apart)
  assert result['weekly_hr_10'] == [1.0, 0.5]
  assert result['segments']['known users']['hr_10'] == 1.0
  assert result['segments']['no history yet']['hr_100'] == 1.0
  assert result['segments']['new users, with history']['ndcg_10'] == 0.5


# --- baselines -----------------------------------------------------------------------------


def _scores_of(baseline, timeline, request):
  """The baseline's score of each movie id for one request (asked in replay order)."""
  scores = baseline.score(timeline, slice(0, len(timeline)))[request]
  return {movie: scores[index] for movie, index in baseline.catalogue.items()}


def test_most_popular_counts_every_rating_before_the_request_replayed_ones_too(timeline):
  popular = replay.popularity_baseline('most-popular', timeline)
  assert _scores_of(popular, timeline, 3) == {'m1': 2, 'm2': 3, 'm3': 1, 'm4': 2, 'm5': 0}


def test_recent_most_popular_counts_only_the_window_before_the_request(timeline):
  recent = replay.popularity_baseline('recent', timeline, window_seconds=25)
  assert _scores_of(recent, timeline, 3) == {'m1': 0, 'm2': 1, 'm3': 0, 'm4': 1, 'm5': 0}


def test_markov_ranks_first_what_followed_the_history_s_last_movie(timeline):
  # In the past m2 was followed by m4 (u2); u3's history so far is [m2], and u3 rates m4.
  ranks, refused = replay.markov_baseline(timeline).rank(timeline, slice(2, 3))
  assert ranks.tolist() == [0] and not refused.any()


def test_ease_scores_a_request_from_the_past_weights_of_its_history_s_movies(timeline):
  ease = replay.ease_baseline(timeline, l2=0.1)
  assert list(ease.catalogue) == ['m1', 'm2', 'm4']  # the past's movies
  weights = baselines.ease_weights(np.array([[1, 1, 0], [1, 1, 1]], np.float32), 0.1)  # u1, u2
  scores = ease.score(timeline, slice(0, 4))
  np.testing.assert_allclose(scores[2], weights[1])  # u3: [m2]
  np.testing.assert_allclose(scores[3], weights[0] + weights[1])  # u1: [m1, m2, m3 (not past)]
  np.testing.assert_array_equal(scores[1], 0)  # no history: nothing to go on


def test_a_baseline_never_counts_the_history_in_its_answer(timeline):
  movies = ['m1', 'm2', 'm3', 'm4', 'm5']
  fixed = replay.ScoringBaseline(  # scores m1 > m2 > ... > m5 for every request
      'fixed', {movie: index for index, movie in enumerate(movies)},
      lambda replay, rows: np.tile(np.arange(5, 0, -1.0), (len(replay.movies[rows]), 1)))
  ranks, refused = fixed.rank(timeline, slice(0, 4))
  # u1 [m1, m2] -> m3 first; u3 [] -> m2 second; u3 [m2] -> m4 third; u1 [m1, m2, m3] -> m5.
  assert ranks.tolist() == [0, 1, 2, 1] and not refused.any()


# --- served models -------------------------------------------------------------------------

RANKING = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']


class _FixedRanking(tf.Module):
  """A stand-in serving model: every query gets RANKING, best first. Queries are user ids
  (refusing 'u3', as the retrieval model refuses a user it was not trained on) or, with
  history=True, context_movie_ids (refusing a row with no movie, as the sequential model
  does)."""

  def __init__(self, history: bool):
    super().__init__()
    if history:
      self.serve = tf.function(self._by_history, input_signature=[
          tf.TensorSpec([None, None], tf.string, name='context_movie_ids')])
    else:
      self.serve = tf.function(self._by_user, input_signature=[
          tf.TensorSpec([None], tf.string, name='user_id')])

  def _answer(self, check: tf.Operation, batch: tf.Tensor):
    with tf.control_dependencies([check]):
      ids = tf.tile(tf.constant([RANKING]), [batch, 1])
    scores = tf.tile(tf.range(len(RANKING), 0, -1, dtype=tf.float32)[None], [batch, 1])
    return {'movie_ids': ids, 'movie_titles': ids, 'scores': scores}

  def _by_user(self, user_id):
    check = tf.debugging.Assert(tf.reduce_all(tf.not_equal(user_id, 'u3')), ['unknown user'])
    return self._answer(check, tf.shape(user_id)[0])

  def _by_history(self, context_movie_ids):
    rows_with_a_movie = tf.reduce_any(tf.not_equal(context_movie_ids, ''), axis=1)
    check = tf.debugging.Assert(tf.reduce_all(rows_with_a_movie), ['empty history'])
    return self._answer(check, tf.shape(context_movie_ids)[0])


def _served(tmp_path, history: bool):
  """_FixedRanking saved and loaded back through serving/saved_model.py, as the product does."""
  from serving import saved_model
  module = _FixedRanking(history)
  path = tmp_path / ('history' if history else 'user')
  tf.saved_model.save(module, str(path), signatures={'serving_default': module.serve})
  return saved_model.load(path)


def test_a_served_model_s_answer_is_ranked_without_the_history(tmp_path, timeline):
  model = replay.ServedModel('stand-in', _served(tmp_path, history=True), k=2)
  ranks, _ = model.rank(timeline, slice(0, 4))
  # u1 [m1, m2] -> m3 first; u3 [m2] -> m4 after m1 and m3; u1 [m1, m2, m3] -> m5 after m4.
  assert ranks[[0, 2, 3]].tolist() == [0, 2, 1]


def test_a_user_the_model_refuses_is_refused_and_missed_without_failing_the_batch(
    tmp_path, timeline):
  model = replay.ServedModel('stand-in', _served(tmp_path, history=False))
  outcome = replay.replay_ranker(model, timeline, batch_size=4, progress=lambda line: None)
  assert outcome.refused.tolist() == [False, True, True, False]
  assert outcome.ranks.tolist() == [0, np.inf, np.inf, 1]


class _FallbackRanking(_FixedRanking):
  """Answers 'u3' by its fallback (strategy 'popular') instead of refusing it."""

  def __init__(self):
    super().__init__(history=False)

  def _by_user(self, user_id):
    answer = self._answer(tf.no_op(), tf.shape(user_id)[0])
    answer['strategy'] = tf.where(tf.equal(user_id, 'u3'), 'popular', 'user')
    return answer


def test_a_served_model_s_fallback_answers_are_counted(tmp_path, timeline):
  from serving import saved_model
  module = _FallbackRanking()
  tf.saved_model.save(module, str(tmp_path / 'fallback'),
                      signatures={'serving_default': module.serve})
  model = replay.ServedModel('stand-in', saved_model.load(tmp_path / 'fallback'))
  outcome = replay.replay_ranker(model, timeline, batch_size=4, progress=lambda line: None)
  assert outcome.fallback.tolist() == [False, True, True, False]
  assert not outcome.refused.any()
  assert replay.metrics(outcome)['fallback'] == 0.5
  # Baselines have no fallback: their column is empty, not 0.
  assert replay.metrics(replay.Outcome(outcome.ranks, outcome.refused))['fallback'] is None


def test_an_empty_history_the_model_refuses_is_refused_alone(tmp_path, timeline):
  model = replay.ServedModel('stand-in', _served(tmp_path, history=True))
  answers = model.answers(timeline, [0, 1, 2, 3], k=3)
  assert answers[1] is None and all(answers[i] == RANKING[:3] for i in (0, 2, 3))


# --- runs and the plot ---------------------------------------------------------------------


def test_the_random_split_baseline_is_the_retrieval_run_when_the_runs_split_at_random():
  runs, notes = replay.model_runs(['retrieval', 'sequential'],
                                  ['--split', 'random', '--no-refit'])
  assert [run.name for run in runs] == ['retrieval', 'sequential'] and 'retrieval' in notes


def test_the_random_split_baseline_runs_apart_from_a_time_split_retrieval():
  runs, notes = replay.model_runs(['retrieval'], [])  # time: the pipeline's default split
  assert [run.args for run in runs] == [
      ('--model', 'retrieval'), ('--model', 'retrieval', '--split', 'random', '--no-refit')]
  assert not notes


def test_the_plot_draws_hr_at_10_per_week_for_every_ranker(tmp_path):
  results = {name: {'weekly_hr_10': [0.1, None, 0.3]} for name in ('EASE', 'retrieval')}
  path = tmp_path / 'replay.json'
  path.write_text(json.dumps({'replay': True, 'dataset': 'ml-100k', 'cut_date': '1998-03-07',
                              'week_starts': ['1998-03-07', '1998-03-14', '1998-03-21'],
                              'week_requests': [5, 0, 7], 'results': results}))
  figure = plot.plot_replay(str(path), str(tmp_path / 'replay.png'))
  assert (tmp_path / 'replay.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
  assert set(lines) == {'EASE', 'retrieval'}
  assert np.isnan(lines['EASE'].get_ydata()[1]) and lines['EASE'].get_ydata()[2] == 0.3
  assert [bar.get_height() for bar in figure.axes[1].patches] == [5, 0, 7]
