"""Turning a serving signature's outputs into per-user top-k lists, and printing them.

Shared by everything that asks a model for recommendations: the SavedModel loaded in process
(`python -m pipeline recommend`) and the REST and gRPC clients.
"""
from typing import Dict, List, Sequence

from components import features as f

Recommendation = Dict[str, object]  # {'movie_id': str, 'title': str, 'score': float}


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def top_k_rows(outputs, k: int = 0) -> List[List[Recommendation]]:
  """{movie_ids, movie_titles, scores} ([batch, top_k] each) -> per user, the best k first."""
  ids, titles, scores = (outputs[name] for name in
                         (f.OUTPUT_MOVIE_IDS, f.OUTPUT_MOVIE_TITLES, f.OUTPUT_SCORES))
  rows = []
  for user_ids, user_titles, user_scores in zip(ids, titles, scores):
    count = min(k, len(user_ids)) if k else len(user_ids)
    rows.append([{'movie_id': _text(user_ids[rank]), 'title': _text(user_titles[rank]),
                  'score': float(user_scores[rank])} for rank in range(count)])
  return rows


def padded_histories(histories: Sequence[Sequence[str]]) -> List[List[str]]:
  """Watch histories (movie ids, oldest first) as the rows of a sequential model's
  context_movie_ids: one [batch, n] batch, '' padding the shorter rows."""
  width = max((len(history) for history in histories), default=0)
  return [list(history) + [''] * (width - len(history)) for history in histories]


def print_recommendations(queries: Sequence[str], rows: List[List[Recommendation]],
                          what: str = 'user') -> None:
  for query, movies in zip(queries, rows):
    print(f'\nTop {len(movies)} movies for {what} {query}:')
    for rank, movie in enumerate(movies, 1):
      print(f'  {rank:>3}. {movie["title"]:<60} (movie {movie["movie_id"]}, '
            f'score {movie["score"]:.3f})')
