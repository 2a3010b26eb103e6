"""Rating = mean + user bias + movie bias, fitted in closed form (regularised alternating means).

The multitask model's rating head starts from these biases (so training fits what they miss),
and make bench-quality's bias baseline is the same fit.
"""
from typing import Tuple

import numpy as np


def fit_biases(user_index: np.ndarray, movie_index: np.ndarray, rating: np.ndarray,
               num_users: int, num_movies: int, l2: float = 10.0,
               iterations: int = 10) -> Tuple[float, np.ndarray, np.ndarray]:
  """(mean, user biases [num_users], movie biases [num_movies]) from rating triples.

  Each bias is the mean residual of its ratings, shrunk towards zero by l2 (as if l2 more
  ratings of residual zero were added); users and movies are updated in turn.
  """
  rating = np.asarray(rating, np.float64)
  mean = float(rating.mean())
  user_bias, movie_bias = np.zeros(num_users), np.zeros(num_movies)
  user_count = np.bincount(user_index, minlength=num_users)
  movie_count = np.bincount(movie_index, minlength=num_movies)
  for _ in range(iterations):
    residual = rating - mean - user_bias[user_index]
    movie_bias = np.bincount(movie_index, residual, num_movies) / (movie_count + l2)
    residual = rating - mean - movie_bias[movie_index]
    user_bias = np.bincount(user_index, residual, num_users) / (user_count + l2)
  return mean, user_bias, movie_bias
