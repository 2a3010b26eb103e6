"""The serving index: ScaNN's top-k against exact brute-force top-k."""
import numpy as np
import pytest
import tensorflow as tf

from components.model import export


def _recall(index_kind, embeddings, queries, k):
  scores, positions = export.build_index(index_kind, tf.constant(embeddings), k)(queries)
  return positions.numpy(), scores.numpy()


@pytest.mark.parametrize('num_candidates, k', [(200, 20), (1_700, 100), (30_000, 10)])
def test_scann_recall_against_brute_force(num_candidates, k):
  rng = np.random.default_rng(0)
  # Clustered, unequal-norm embeddings, like a trained tower's, not an easy isotropic cloud.
  centers = rng.normal(size=(16, 32))
  embeddings = (centers[rng.integers(16, size=num_candidates)]
                + 0.5 * rng.normal(size=(num_candidates, 32))).astype(np.float32)
  queries = tf.constant(rng.normal(size=(64, 32)).astype(np.float32))
  approximate, approximate_scores = _recall('scann', embeddings, queries, k)
  exact, _ = _recall('brute-force', embeddings, queries, k)
  recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approximate, exact)])
  assert recall >= 0.95, recall
  assert np.all(np.diff(approximate_scores, axis=1) <= 1e-5)  # best first


def test_parameters_search_small_catalogues_exhaustively():
  assert export.scann_parameters(1_682, 100) == {
      'num_leaves': 2, 'num_leaves_to_search': 2, 'num_reordering_candidates': 400}
  large = export.scann_parameters(1_000_000, 10)
  assert large['num_leaves'] == 1000 and 20 <= large['num_leaves_to_search'] <= 100
