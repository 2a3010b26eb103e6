"""Asking a served model for recommendations: the request for its kind of query, its outputs
as per-query answers (the top-k list and the strategy that answered), and printing them.

Shared by everything that asks a model for recommendations: the SavedModel loaded in process
(`python -m pipeline recommend`) and the REST and gRPC clients.
"""
import dataclasses
import time
from typing import Collection, Dict, List, Optional, Sequence

import numpy as np

from components import features as f
from components.model import kinds

# The model name `pipeline run` pushes to without --model (the default kind), which the
# clients, the demo and the config files ask for unless told another.
DEFAULT_MODEL_NAME = kinds.DEFAULT

Recommendation = Dict[str, object]  # {'movie_id': str, 'title': str, 'score': float}

# How print_recommendations names each `strategy` output value.
STRATEGY_WORDS = {
    f.STRATEGY_USER: "from the user's embedding",
    f.STRATEGY_HISTORY: 'from the history',
    f.STRATEGY_POPULAR: 'not known to the model, so the most rated of late; scores are counts',
}


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class Answer:
  """One query's answer: its movies, best first, and which path answered it (the `strategy`
  output: 'user', 'history' or 'popular'; '' from a model exported without it)."""
  movies: List[Recommendation]
  strategy: str

  def to_json(self) -> Dict[str, object]:
    return {'strategy': self.strategy, 'movies': self.movies}


def top_k_rows(outputs, k: int = 0) -> List[Answer]:
  """{movie_ids, movie_titles, scores} ([batch, top_k] each) and strategy ([batch]) -> per
  query, the best k movies first and the strategy."""
  ids, titles, scores = (outputs[name] for name in
                         (f.OUTPUT_MOVIE_IDS, f.OUTPUT_MOVIE_TITLES, f.OUTPUT_SCORES))
  strategies = outputs.get(f.OUTPUT_STRATEGY, [''] * len(ids))
  rows = []
  for user_ids, user_titles, user_scores, strategy in zip(ids, titles, scores, strategies):
    count = min(k, len(user_ids)) if k else len(user_ids)
    rows.append(Answer([{'movie_id': _text(user_ids[rank]), 'title': _text(user_titles[rank]),
                         'score': float(user_scores[rank])} for rank in range(count)],
                       _text(strategy)))
  return rows


@dataclasses.dataclass
class Request:
  """serving_default's inputs for some queries, and how to name each query when printing."""
  inputs: Dict[str, object]  # input name -> a list of strings or an int64 array
  names: List[str]
  what: str  # 'user' or 'the history'


def make_request(input_names: Collection[str], user_ids: Sequence[str] = (),
                 histories: Sequence[Sequence[str]] = (),
                 timestamps: Optional[Sequence[int]] = None) -> Request:
  """The request a model with these serving inputs takes.

  A sequential model (context_movie_ids) takes watch histories, oldest first; '' pads the
  shorter ones; one that also reads user_id takes a user per history ('' for none: an unknown
  id, as a new user's, is answered from the history alone). Other models take user ids, and
  with timestamps one per user (default: now).
  """
  if f.CONTEXT_MOVIE_IDS in input_names:
    if not histories:
      raise ValueError('this model recommends from a watch history: pass movie ids '
                       '(--history 1,50,181), not users')
    width = max(len(history) for history in histories)
    padded = [list(history) + [''] * (width - len(history)) for history in histories]
    names = [','.join(history) for history in histories]
    if f.USER_ID not in input_names:
      return Request({f.CONTEXT_MOVIE_IDS: padded}, names, 'the history')
    users = [str(user) for user in user_ids] or [''] * len(histories)
    if len(users) != len(histories):
      raise ValueError(f'{len(users)} users for {len(histories)} histories: pass one --user '
                       'per --history, in the same order, or none')
    return Request({f.CONTEXT_MOVIE_IDS: padded, f.USER_ID: users},
                   [f'{name} of user {user}' if user else name for user, name in zip(users, names)],
                   'the history')
  if not user_ids:
    raise ValueError('this model recommends for users: pass user ids (--user 42)')
  users = [str(user) for user in user_ids]
  inputs = {f.USER_ID: users}
  if f.TIMESTAMP in input_names:
    inputs[f.TIMESTAMP] = np.asarray(timestamps or [int(time.time())] * len(users), np.int64)
  return Request(inputs, users, 'user')


def print_recommendations(request: Request, rows: List[Answer]) -> None:
  """Each query's movies under a line that names the query and the strategy that answered it
  (for 'popular', the scores are the movies' recent rating counts)."""
  for query, answer in zip(request.names, rows):
    strategy = STRATEGY_WORDS.get(answer.strategy, answer.strategy)
    print(f'\nTop {len(answer.movies)} movies for {request.what} {query}'
          + (f' (strategy {answer.strategy}: {strategy})' if answer.strategy else '') + ':')
    for rank, movie in enumerate(answer.movies, 1):
      print(f'  {rank:>3}. {movie["title"]:<60} (movie {movie["movie_id"]}, '
            f'score {movie["score"]:.3f})')
