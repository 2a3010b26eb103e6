"""make bench-replay: the models and baselines replayed against the future, in time order.

The protocol. The ratings are cut in time: the latest --future-percent of them (20; the
pipeline's own time-split rule), or those from --cut-date on, are the future. The real
pipeline (`python -m pipeline run`) trains on the past only: a folder of the same raw format
holding the past ratings and the data's other files. Then every future rating is replayed in
time order as the request a live service would get at that moment: the user id, the time, and
the user's history so far (every movie they rated before, in the past and earlier in the
replay, oldest first; ratings of one second in movie id order, as TimelineGen orders them).
The rated movie is the one to find; the history's movies are never counted in the answer (a
product does not recommend what the user has rated), so the top 10 are the best 10 movies
outside the history.

Metrics, overall and per segment of requests: HR@10 and HR@100 (the rated movie is among the
top 10 / 100) and NDCG@10 (1 / log2(rank + 2) in the top 10: one relevant movie). Segments:
known users (they rated in the past data), new users with history (first seen after the cut,
with at least one earlier rating in the replay), and no history yet (a new user's first
request). A request a model refuses is a miss, and counted in the refused share. HR@10 per
week of requests is written for the plot (benchmarks/plot.py).

Models (--model, default retrieval and sequential) are scored through the pushed serving
SavedModel as the product asks it (serving/saved_model.py load, recommend, input_names;
serving/recommendations.py make_request), in batches. The history is excluded by asking the
model for more than k and filtering here, not through the serving_exclude signature (which
takes at most --max-excluded movies a query, while histories run to hundreds): the runs export
--top-k 100 + the longest history of any request (the only change to the pipeline's defaults;
it sizes the served list and nothing in training), so at least 100 movies are left once the
history is removed. Models exported since the serving fallback answer every request (a user id
they were not trained on, or an empty history, gets the training data's recently most rated
movies, strategy 'popular'), so their refused share is 0; the fallback column is the share of
requests they answered that way (its HR is part of theirs). A model that refuses a request
(InvalidArgumentError, as models exported before the fallback did for unknown users and empty
histories) fails the whole batch: a failed batch is asked again in halves until each refused
request stands alone, and a refused request counts as a miss and as refused.

Baselines, from the same requests and histories (pipeline/baselines.py): most-popular by the
ratings before the request (all of them, and those of the last --recent-days), EASE fit on the
past and scored from the request's history, first-order Markov fit on the past users'
consecutive ratings and scored from the history's last movie (popularity when there is none),
and the random-split retrieval model (a pipeline run with --split random on the past, as the
tutorials train it).

Runs on real data with DATA_DIR=<folder> (ml-100k, ml-1m or CSV format); without it, on synthetic
data (and says so). Writes the past folder, the pipeline workdirs, every figure (JSON) and the
plot under --workdir, and prints where.
"""
import argparse
import collections
import dataclasses
import datetime
import json
import os
import pathlib
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import components  # noqa: F401  (process set-up before TensorFlow loads)
import numpy as np
import tensorflow as tf
from components import features as f
from components.ingest import movielens
from components.ingest.example_gen import time_cutoff
from components.model.config import MODEL_KINDS
from components.timelines import tie_order
from pipeline import baselines, cli
from serving import saved_model
from serving.recommendations import make_request

SEGMENTS = ('known users', 'new users, with history', 'no history yet')
KNOWN, NEW_WITH_HISTORY, NO_HISTORY = range(len(SEGMENTS))
KS = (10, 100)
DAY_SECONDS = 24 * 3600
WEEK_SECONDS = 7 * DAY_SECONDS

# A ratings line of each format, as GroupLens writes it (user, movie, rating, timestamp); the
# readers (components/ingest/movielens.py) read it back, which tests/test_replay.py checks.
_RATING_LINE = {'ml-100k': '{}\t{}\t{:g}\t{}\n', 'ml-1m': '{}::{}::{:g}::{}\n',
                'csv': '{},{},{:.1f},{}\n'}


def _date(timestamp: int) -> str:
  return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime('%Y-%m-%d')


def _moment(timestamp: int) -> str:
  return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime(
      '%Y-%m-%d %H:%M:%S UTC')


# ---------------------------------------------------------------------------------------------
# The time cut and the past folder.


def cut_time(timestamps: Sequence[int], future_percent: Optional[float] = None,
             cut_date: Optional[str] = None) -> int:
  """The first second of the future: ratings at or after it are replayed, the rest are past.

  future_percent: the latest share of the ratings, by the pipeline's time-split rule
  (components/ingest/example_gen.py time_cutoff: the past holds the ratings strictly before
  the timestamp found at that share); cut_date: 'YYYY-MM-DD', 00:00 UTC.
  Raises ValueError, naming the data's range, when the past or the future would be empty.
  """
  ordered = np.sort(np.asarray(timestamps, np.int64))
  first, last = int(ordered[0]), int(ordered[-1])
  span = f'the ratings run from {_date(first)} to {_date(last)} (UTC)'
  if cut_date is not None:
    try:
      day = datetime.datetime.strptime(cut_date, '%Y-%m-%d')
    except ValueError:
      raise ValueError(f'--cut-date {cut_date!r} is not a date of the form YYYY-MM-DD') from None
    cut = int(day.replace(tzinfo=datetime.timezone.utc).timestamp())
    if not first < cut <= last:
      raise ValueError(f'--cut-date {cut_date} leaves no {"past" if cut <= first else "future"}'
                       f': {span}; pick a date after the first day and up to the last')
    return cut
  if future_percent is None or not 0 < future_percent < 100:
    raise ValueError(f'--future-percent must be between 0 and 100, got {future_percent}')
  cut = time_cutoff(ordered, 1 - future_percent / 100)
  if cut <= first:
    raise ValueError(f'the latest {future_percent}% of the ratings leave no past: the ratings '
                     f'at {_date(first)} share the earliest timestamp; {span}: pass --cut-date')
  return cut


def _write_if_changed(path: pathlib.Path, content: bytes) -> None:
  """Leaves an identical file alone, so its fingerprint (and the pipeline's cache) holds."""
  if path.exists() and path.read_bytes() == content:
    return
  path.write_bytes(content)


def write_past(data_dir, fmt: str, ratings: Sequence[movielens.Rating], cut: int,
               out_dir) -> pathlib.Path:
  """A raw folder of `fmt` for the pipeline: the ratings before `cut` (the readers' kept
  ratings, so a rating re-rated in the future is not in the past too) and the files the
  readers read besides (movies, users, genres). Other files of data_dir (ml-100k's u1.base and
  the like hold future ratings too) are left out, and so is anything else in out_dir (an
  earlier replay's files of another format)."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  names = movielens.FILE_NAMES[fmt]
  kept = set()
  for kind, name in names.items():
    source = pathlib.Path(data_dir, name)
    if kind != 'ratings' and source.is_file():
      _write_if_changed(out / name, source.read_bytes())
      kept.add(name)
  header = movielens.header_of(fmt, 'ratings')
  lines = (f'{header}\n' if header else '') + ''.join(
      _RATING_LINE[fmt].format(r.user_id, r.movie_id, r.rating, r.timestamp)
      for r in ratings if r.timestamp < cut)
  _write_if_changed(out / names['ratings'], lines.encode('utf-8'))
  kept.add(names['ratings'])
  for stale in out.iterdir():
    if stale.name not in kept and stale.is_file():
      stale.unlink()
  return out


# ---------------------------------------------------------------------------------------------
# The replay: requests in time order, each with the user's history so far.


@dataclasses.dataclass
class Replay:
  """The future ratings as requests in replay order, and every user's ratings in time order.

  users, movies: [n] ids (str); times: [n] int64 seconds; history_lengths: [n], request i's
  history being timelines[users[i]][:history_lengths[i]]; segments: [n] indices of SEGMENTS.
  past: the ratings before the cut, in time order (what the baselines fit on).
  """
  users: List[str]
  movies: List[str]
  times: np.ndarray
  history_lengths: np.ndarray
  segments: np.ndarray
  timelines: Dict[str, List[str]]
  past: List[movielens.Rating]
  cut: int

  def __len__(self) -> int:
    return len(self.users)

  def history(self, request: int) -> List[str]:
    """The movies the request's user rated before it, oldest first."""
    return self.timelines[self.users[request]][:self.history_lengths[request]]

  def histories(self, rows: slice) -> List[List[str]]:
    return [self.history(request) for request in range(*rows.indices(len(self)))]


def _replay_order(rating: movielens.Rating):
  """Time, then (for ratings of one second) user and movie id as TimelineGen orders ties:
  numeric ids by value."""
  return (rating.timestamp, tie_order(rating.user_id.encode()),
          tie_order(rating.movie_id.encode()))


def make_replay(ratings: Sequence[movielens.Rating], cut: int) -> Replay:
  """Orders the ratings in time (_replay_order) and replays those at or after `cut`."""
  ordered = sorted(ratings, key=_replay_order)
  timelines: Dict[str, List[str]] = collections.defaultdict(list)
  past = [r for r in ordered if r.timestamp < cut]
  for rating in ordered:
    timelines[rating.user_id].append(rating.movie_id)
  rated = collections.Counter(r.user_id for r in past)
  known = set(rated)
  future = ordered[len(past):]
  lengths, segments = [], []
  for rating in future:
    lengths.append(rated[rating.user_id])
    segments.append(KNOWN if rating.user_id in known else
                    NEW_WITH_HISTORY if rated[rating.user_id] else NO_HISTORY)
    rated[rating.user_id] += 1
  return Replay([r.user_id for r in future], [r.movie_id for r in future],
                np.array([r.timestamp for r in future], np.int64), np.array(lengths, np.int64),
                np.array(segments, np.int64), dict(timelines), past, cut)


def batches(count: int, size: int) -> Iterator[slice]:
  for start in range(0, count, size):
    yield slice(start, min(start + size, count))


# ---------------------------------------------------------------------------------------------
# Rankers: each ranks a batch of requests' movies -> (ranks [n] float, 0 = first outside the
# history, inf = not found; refused [n] bool).

Ranks = Tuple[np.ndarray, np.ndarray]


def _catalogue(movie_ids) -> Dict[str, int]:
  """Position of each distinct id, sorted (over movies: a scorer's score columns)."""
  return {movie: index for index, movie in enumerate(sorted(set(movie_ids)))}


class ScoringBaseline:
  """A baseline that scores every movie of its catalogue for each request; the rated movie is
  ranked among the movies outside the history (baselines.unseen_ranks: ties count against it,
  a movie outside the catalogue is never found)."""

  def __init__(self, name: str, catalogue: Dict[str, int],
               score: Callable[[Replay, slice], np.ndarray]):
    self.name = name
    self.catalogue = catalogue
    self.score = score  # (replay, rows) -> [n, len(catalogue)]

  def rank(self, replay: Replay, rows: slice) -> Ranks:
    labels = baselines.movie_indices(replay.movies[rows], self.catalogue)
    seen = [baselines.movie_indices(history, self.catalogue) for history in
            replay.histories(rows)]
    seen = [indices[indices >= 0] for indices in seen]
    ranks = baselines.unseen_ranks(self.score(replay, rows), labels, seen)
    return ranks, np.zeros(len(labels), bool)


class Popularity:
  """Most-popular at the time of each request: every movie scored by its ratings before the
  request in replay order (the past's and the replay's), all of them or (window_seconds) only
  those of that window before the request's time. Asked for batches in replay order only:
  it counts as it goes."""

  def __init__(self, replay: Replay, window_seconds: Optional[int] = None):
    self.catalogue = _catalogue([r.movie_id for r in replay.past] + replay.movies)
    self.movies = baselines.movie_indices([r.movie_id for r in replay.past] + replay.movies,
                                          self.catalogue)  # every rating, replay order
    self.times = np.concatenate([np.array([r.timestamp for r in replay.past], np.int64),
                                 replay.times])
    self.first_request = len(replay.past)
    self.window_seconds = window_seconds
    self.counts = np.zeros(len(self.catalogue), np.float64)
    self.counted = 0  # ratings [0, counted) are in counts
    self.forgotten = 0  # ... and [0, forgotten) have left the window again

  def score(self, replay: Replay, rows: slice) -> np.ndarray:
    """[n, movies] counts as each request of rows saw them."""
    start, stop, _ = rows.indices(len(replay))
    if self.first_request + start < self.counted:
      raise ValueError('Popularity is asked in replay order only')
    scores = np.empty((stop - start, len(self.catalogue)), np.float64)
    for row, request in enumerate(range(start, stop)):
      position = self.first_request + request
      np.add.at(self.counts, self.movies[self.counted:position], 1)
      self.counted = position
      if self.window_seconds is not None:
        window_start = self.times[request + self.first_request] - self.window_seconds
        old = self.forgotten + int(np.searchsorted(self.times[self.forgotten:position],
                                                   window_start))
        np.subtract.at(self.counts, self.movies[self.forgotten:old], 1)
        self.forgotten = old
      scores[row] = self.counts
    return scores


def popularity_baseline(name: str, replay: Replay,
                        window_seconds: Optional[int] = None) -> ScoringBaseline:
  popularity = Popularity(replay, window_seconds)
  return ScoringBaseline(name, popularity.catalogue, popularity.score)


def ease_baseline(replay: Replay, l2: float) -> ScoringBaseline:
  """EASE (baselines.ease_weights) fit on the past's users x movies, scored from each
  request's history: [n, movies] = history (0/1 over the past's movies) @ weights. An empty
  history scores every movie 0: a tie, so never a hit."""
  catalogue = _catalogue(r.movie_id for r in replay.past)
  users = _catalogue(r.user_id for r in replay.past)
  matrix = np.zeros((len(users), len(catalogue)), np.float32)
  matrix[[users[r.user_id] for r in replay.past], [catalogue[r.movie_id] for r in replay.past]] = 1
  weights = baselines.ease_weights(matrix, l2)

  def score(replay: Replay, rows: slice) -> np.ndarray:
    histories = np.zeros((len(replay.movies[rows]), len(catalogue)), np.float32)
    for row, history in enumerate(replay.histories(rows)):
      indices = baselines.movie_indices(history, catalogue)
      histories[row, indices[indices >= 0]] = 1
    return histories @ weights

  return ScoringBaseline('EASE', catalogue, score)


def markov_baseline(replay: Replay) -> ScoringBaseline:
  """First-order Markov (baselines.markov_scorer) fit on each past user's consecutive ratings,
  scored from the history's last movie."""
  lasts, nexts = [], []
  for movies in _past_timelines(replay).values():
    lasts.extend(movies[:-1])
    nexts.extend(movies[1:])
  catalogue = _catalogue(r.movie_id for r in replay.past)
  markov = baselines.markov_scorer(lasts, nexts, catalogue)

  def score(replay: Replay, rows: slice) -> np.ndarray:
    return markov([history[-1] if history else None for history in replay.histories(rows)])

  return ScoringBaseline('Markov', catalogue, score)


def _past_timelines(replay: Replay) -> Dict[str, List[str]]:
  timelines: Dict[str, List[str]] = collections.defaultdict(list)
  for rating in replay.past:
    timelines[rating.user_id].append(rating.movie_id)
  return timelines


class ServedModel:
  """A pushed serving SavedModel, asked as the product asks it, k + history movies a request;
  the history is filtered out of its answer here (module docstring)."""

  def __init__(self, name: str, serving_fn, k: int = max(KS)):
    self.name = name
    self.serving_fn = serving_fn
    self.k = k
    self.inputs = saved_model.input_names(serving_fn)
    self.short_answers = 0  # fewer than k movies left after the history (see rank)
    self.fallback_requests = set()  # answered by the model's fallback (strategy 'popular')

  def _request(self, replay: Replay, requests: Sequence[int]):
    # '' is the documented padding: an empty history is sent as one, and refused by the model.
    return make_request(
        self.inputs, user_ids=[replay.users[i] for i in requests],
        histories=[replay.history(i) or [''] for i in requests],
        timestamps=[int(replay.times[i]) for i in requests])

  def answers(self, replay: Replay, requests: Sequence[int],
              k: int) -> List[Optional[List[str]]]:
    """Each request's movie ids, best first (None: refused). A refused request fails its
    whole batch (InvalidArgumentError), so a failed batch is asked again in halves."""
    try:
      rows = saved_model.recommend(self.serving_fn, self._request(replay, requests), k)
    except tf.errors.InvalidArgumentError:
      if len(requests) == 1:
        return [None]
      half = len(requests) // 2
      return (self.answers(replay, requests[:half], k)
              + self.answers(replay, requests[half:], k))
    self.fallback_requests.update(request for request, answer in zip(requests, rows)
                                  if answer.strategy == f.STRATEGY_POPULAR)
    return [[movie['movie_id'] for movie in answer.movies] for answer in rows]

  def rank(self, replay: Replay, rows: slice) -> Ranks:
    start, stop, _ = rows.indices(len(replay))
    ranks = np.full(stop - start, np.inf)
    refused = np.zeros(stop - start, bool)
    asked = list(range(start, stop))
    if not asked:
      return ranks, refused
    k = self.k + int(max(replay.history_lengths[asked]))
    for request, answer in zip(asked, self.answers(replay, asked, k)):
      if answer is None:
        refused[request - start] = True
        continue
      history = set(replay.history(request))
      kept = [movie for movie in answer if movie and movie not in history]
      if len(kept) < self.k:
        self.short_answers += 1
      if replay.movies[request] in kept:
        ranks[request - start] = kept.index(replay.movies[request])
    return ranks, refused


# ---------------------------------------------------------------------------------------------
# Metrics.


@dataclasses.dataclass
class Outcome:
  """A ranker's replay: ranks [n] (0 = first outside the history, inf = missed) and refused
  [n] of every request; a served model's also fallback [n] (answered by its fallback)."""
  ranks: np.ndarray
  refused: np.ndarray
  fallback: Optional[np.ndarray] = None


def replay_ranker(ranker, replay: Replay, batch_size: int = 256,
                  progress: Callable[[str], None] = print,
                  progress_seconds: float = 10.0) -> Outcome:
  """Every request ranked in replay order, in batches; says how far it got every
  progress_seconds, and when it is done."""
  ranks, refused = [], []
  started = last_report = time.time()
  for rows in batches(len(replay), batch_size):
    batch_ranks, batch_refused = ranker.rank(replay, rows)
    ranks.append(batch_ranks)
    refused.append(batch_refused)
    if time.time() - last_report >= progress_seconds and rows.stop < len(replay):
      last_report = time.time()
      progress(f'  {ranker.name}: {rows.stop:,}/{len(replay):,} requests '
               f'({last_report - started:.0f} s)')
  progress(f'  {ranker.name}: {len(replay):,} requests in {time.time() - started:.0f} s')
  fallback = None
  if hasattr(ranker, 'fallback_requests'):
    fallback = np.zeros(len(replay), bool)
    fallback[sorted(ranker.fallback_requests)] = True
  return Outcome(np.concatenate(ranks) if ranks else np.zeros(0),
                 np.concatenate(refused) if refused else np.zeros(0, bool), fallback)


def metrics(outcome: Outcome, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
  """{requests, hr_10, hr_100, ndcg_10, refused, fallback} over the masked requests (all by
  default); rates are None when there are none (fallback also for rankers without one).
  NDCG@10 with one relevant movie: 1 / log2(rank + 2)."""
  ranks = outcome.ranks if mask is None else outcome.ranks[mask]
  refused = outcome.refused if mask is None else outcome.refused[mask]
  count = len(ranks)
  if not count:
    return {'requests': 0, 'hr_10': None, 'hr_100': None, 'ndcg_10': None, 'refused': None,
            'fallback': None}
  gains = np.where(ranks < 10, 1 / np.log2(np.minimum(ranks, 10) + 2), 0.0)
  result = {'requests': count}
  for k in KS:
    result[f'hr_{k}'] = float(np.mean(ranks < k))
  result['ndcg_10'] = float(np.mean(gains))
  result['refused'] = float(np.mean(refused))
  fallback = outcome.fallback if mask is None or outcome.fallback is None else \
      outcome.fallback[mask]
  result['fallback'] = None if fallback is None else float(np.mean(fallback))
  return result


def report(outcome: Outcome, replay: Replay) -> Dict[str, object]:
  """Overall and per-segment metrics, and HR@10 per week from the cut."""
  weeks = (replay.times - replay.cut) // WEEK_SECONDS
  weekly = [metrics(outcome, weeks == week)['hr_10'] for week in range(int(weeks.max()) + 1)]
  return {'overall': metrics(outcome),
          'segments': {name: metrics(outcome, replay.segments == index)
                       for index, name in enumerate(SEGMENTS)},
          'weekly_hr_10': weekly}


def weekly_requests(replay: Replay) -> Tuple[List[str], List[int]]:
  """The start date of each week from the cut, and its requests."""
  weeks = (replay.times - replay.cut) // WEEK_SECONDS
  count = int(weeks.max()) + 1
  return ([_date(replay.cut + week * WEEK_SECONDS) for week in range(count)],
          np.bincount(weeks, minlength=count).tolist())


# ---------------------------------------------------------------------------------------------
# Pipeline runs on the past.


@dataclasses.dataclass(frozen=True)
class ModelRun:
  """One `pipeline run` on the past: its row name and its arguments besides data and workdir."""
  name: str
  args: Tuple[str, ...]


def model_runs(kinds: Sequence[str], pipeline_args: Sequence[str], random_split: bool = True
               ) -> Tuple[List[ModelRun], Dict[str, str]]:
  """The runs to train, and notes for runs that were merged.

  Each kind runs with the pipeline's defaults plus pipeline_args; the random-split retrieval
  baseline adds --split random --no-refit, and is the `retrieval` run itself when their
  arguments parse the same (pipeline_args hold both).
  """
  runs = [ModelRun(kind, ('--model', kind, *pipeline_args)) for kind in kinds]
  notes = {}
  if random_split:
    # The tutorials' model as the product shipped it before the time split: no refit.
    baseline = ModelRun('retrieval, random split', ('--model', 'retrieval', *pipeline_args,
                                                    '--split', 'random', '--no-refit'))
    parse = lambda args: vars(cli.build_parser().parse_args(['run', *args]))  # noqa: E731
    same = [run for run in runs if parse(run.args) == parse(baseline.args)]
    if same:
      notes[same[0].name] = (f'{same[0].name} is also the random-split retrieval baseline: '
                             'the runs were given --split random --no-refit')
    else:
      runs.append(baseline)
  return runs, notes


def train(run: ModelRun, past_dir: pathlib.Path, fmt: str, workdir: pathlib.Path, top_k: int,
          no_cache: bool) -> pathlib.Path:
  """Runs the pipeline on the past (the gate opened: every model is pushed); returns the
  pushed version folder."""
  argv = ['run', '--dataset', fmt, '--data-dir', str(past_dir), '--workdir', str(workdir),
          '--top-k', str(top_k), '--min-accuracy', '0', '--max-regression', '1',
          '--max-rmse', '100', '--drift-action', 'off', *run.args,
          *(['--no-cache'] if no_cache else [])]
  seconds = run_pipeline_command(argv, f'the pipeline run for {run.name}', workdir)
  model_dir = saved_model.latest_version_dir(pushed_model_base(workdir))
  print(f'{run.name}: pipeline run in {seconds:.0f} s; replaying {model_dir}')
  return model_dir


def run_pipeline_command(argv: Sequence[str], what: str, workdir: pathlib.Path) -> float:
  """`python -m pipeline <argv>` in this process (also bench-continuous's replays); its wall
  seconds. RuntimeError naming `what` and the workdir if it does not exit 0."""
  print(f'\n== python -m pipeline {" ".join(argv)}', flush=True)
  started = time.time()
  exit_code = cli.main(list(argv))
  if exit_code != 0:
    raise RuntimeError(f'{what} failed (exit code {exit_code}); its workdir is {workdir}')
  return time.time() - started


def pushed_model_base(workdir: pathlib.Path) -> pathlib.Path:
  """The one model folder under <workdir>/serving_models (beside the rollout's
  models.config)."""
  root = workdir / 'serving_models'
  names = sorted(name for name in os.listdir(root) if (root / name).is_dir())
  if len(names) != 1:
    raise RuntimeError(f'expected one pushed model under {root}, found {names}')
  return root / names[0]


# ---------------------------------------------------------------------------------------------
# The command.


def _table(results: Dict[str, Dict[str, object]], segment: Optional[str]) -> List[str]:
  lines = [f'{"":<30}{"HR@10":>8}{"HR@100":>8}{"NDCG@10":>9}{"refused":>9}{"fallback":>9}']
  for name, result in results.items():
    figures = result['overall'] if segment is None else result['segments'][segment]
    if not figures['requests']:
      continue
    fallback = '-' if figures.get('fallback') is None else f'{figures["fallback"]:.1%}'
    lines.append(f'{name:<30}{figures["hr_10"]:>8.3f}{figures["hr_100"]:>8.3f}'
                 f'{figures["ndcg_10"]:>9.3f}{figures["refused"]:>9.1%}{fallback:>9}')
  return lines


def print_report(results: Dict[str, Dict[str, object]], replay: Replay) -> None:
  counts = np.bincount(replay.segments, minlength=len(SEGMENTS))
  blocks = [('all requests', None, len(replay))] + [
      (name, name, int(counts[index])) for index, name in enumerate(SEGMENTS)]
  for title, segment, count in blocks:
    print(f'\n-- {title}: {count:,} requests ({count / len(replay):.1%}) --')
    print('\n'.join(_table(results, segment)))


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
  """How the replayed requests are scored (also bench-continuous's): EASE's L2, batch size."""
  parser.add_argument('--ease-l2', type=float, default=500.0,
                      help='L2 regularisation of the EASE baseline (default: 500)')
  parser.add_argument('--batch-size', type=int, default=256,
                      help='requests per call to a model (default: 256)')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.replay', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-dir', help='a MovieLens folder (ml-100k, ml-1m or CSV format); '
                      'without it, synthetic data')
  cut = parser.add_mutually_exclusive_group()
  cut.add_argument('--future-percent', type=float, default=20.0,
                   help='replay the latest share of the ratings (default: 20)')
  cut.add_argument('--cut-date', metavar='YYYY-MM-DD',
                   help='replay the ratings from this day on (00:00 UTC)')
  parser.add_argument('--model', action='append', choices=MODEL_KINDS + ('none',),
                      help='a model kind to train on the past and replay (repeatable; default: '
                      'retrieval and sequential; none: the baselines only, no pipeline run)')
  parser.add_argument('--no-random-split-model', action='store_true',
                      help='leave out the random-split retrieval baseline (a pipeline run of '
                      'its own unless --pipeline-arg gives --split random)')
  parser.add_argument('--pipeline-arg', action='append', default=[], metavar='ARG',
                      help='an argument for every `pipeline run`, e.g. '
                      '--pipeline-arg=--ensemble-size=1 (repeatable; default: the pipeline\'s '
                      'defaults)')
  parser.add_argument('--no-cache', action='store_true',
                      help='re-run every pipeline component (default: reuse unchanged outputs)')
  add_scoring_arguments(parser)
  parser.add_argument('--recent-days', type=int, default=30,
                      help='the window of the recent most-popular baseline (default: 30)')
  parser.add_argument('--workdir', default=os.path.join('workdir', 'bench-replay'),
                      help='the past folder, pipeline workdirs and results go here '
                      '(default: workdir/bench-replay)')
  parser.add_argument('--results-json', help='every figure (default: <workdir>/replay.json)')
  parser.add_argument('--plot', help='HR@10 per week (default: <workdir>/replay_hr_10.png)')
  return parser


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  kinds = [kind for kind in (args.model or ['retrieval', 'sequential']) if kind != 'none']
  if args.batch_size < 1 or args.recent_days < 1:
    parser.error('--batch-size and --recent-days must be at least 1')
  workdir = pathlib.Path(args.workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  if args.data_dir:
    data_dir = pathlib.Path(args.data_dir)
    try:
      fmt = movielens.detect_format(data_dir)
    except movielens.MovieLensFormatError as error:
      parser.error(str(error))
    print(f'Replay on real data ({fmt}) from {data_dir}')
  else:
    from pipeline import datasets
    data_dir, fmt = datasets.resolve_data_dir('synthetic', str(workdir)), 'ml-100k'
    print('DATA_DIR not given: replaying SYNTHETIC data. For the real figures run\n'
          '  make bench-replay DATA_DIR=/path/to/ml-100k')

  try:
    ratings = list(movielens.iter_ratings(data_dir, fmt))
    cut = cut_time([r.timestamp for r in ratings],
                   None if args.cut_date else args.future_percent, args.cut_date)
  except (ValueError, movielens.MovieLensFormatError) as error:
    parser.error(str(error))
  replay = make_replay(ratings, cut)
  past_dir = write_past(data_dir, fmt, ratings, cut, workdir / 'past')
  counts = np.bincount(replay.segments, minlength=len(SEGMENTS))
  print(f'Cut at {_moment(cut)}: {len(replay.past):,} past ratings before it, in {past_dir}; '
        f'{len(replay):,} requests to replay, up to {_date(int(replay.times[-1]))}: '
        + ', '.join(f'{name} {count:,}' for name, count in zip(SEGMENTS, counts)))

  rankers = [popularity_baseline('most-popular', replay),
             popularity_baseline(f'most-popular, last {args.recent_days} days', replay,
                                 args.recent_days * DAY_SECONDS),
             ease_baseline(replay, args.ease_l2), markov_baseline(replay)]
  runs, notes = model_runs(kinds, args.pipeline_arg,
                           random_split=bool(kinds) and not args.no_random_split_model)
  top_k = max(KS) + int(replay.history_lengths.max())
  for run in runs:
    model_dir = train(run, past_dir, fmt, workdir / 'runs' / run.name.replace(', ', '-')
                      .replace(' ', '-'), top_k, args.no_cache)
    rankers.append(ServedModel(run.name, saved_model.load(model_dir)))

  print(f'\n== Replaying {len(replay):,} requests ==')
  results = {}
  for ranker in rankers:
    results[ranker.name] = report(replay_ranker(ranker, replay, args.batch_size), replay)
    if getattr(ranker, 'short_answers', 0):
      print(f'  note: {ranker.short_answers:,} answers of {ranker.name} held fewer than '
            f'{max(KS)} movies once the history was removed: the model returned all it had '
            '(its whole catalogue, or its --top-k if set lower) and the history took the rest')

  print(f'\n== Replay: {fmt if args.data_dir else "synthetic"}, {len(replay.past):,} past '
        f'ratings, {len(replay):,} requests from {_date(cut)}; the history excluded ==')
  print_report(results, replay)
  for note in notes.values():
    print(f'({note})')

  week_starts, week_requests = weekly_requests(replay)
  path = pathlib.Path(args.results_json or workdir / 'replay.json')
  with open(path, 'w') as out:
    json.dump({'replay': True, 'dataset': fmt if args.data_dir else 'synthetic',
               'argv': list(sys.argv[1:] if argv is None else argv), 'cut': cut,
               'cut_date': _date(cut), 'past_ratings': len(replay.past),
               'requests': len(replay),
               'segments': dict(zip(SEGMENTS, counts.tolist())), 'notes': notes,
               'week_starts': week_starts, 'week_requests': week_requests,
               'results': results}, out, indent=1)
  print(f'\nEvery figure: {path}')
  from benchmarks import plot
  plot_path = args.plot or str(workdir / 'replay_hr_10.png')
  import matplotlib.pyplot as plt
  plt.close(plot.plot_replay(str(path), plot_path))
  return 0


if __name__ == '__main__':
  sys.exit(main())
