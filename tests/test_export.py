"""The serving index: ScaNN's top-k against exact brute-force top-k."""
import numpy as np
import pytest
import tensorflow as tf

from components.model import export


def _search(index_kind, embeddings, queries, k):
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
  approximate, approximate_scores = _search('scann', embeddings, queries, k)
  exact, _ = _search('brute-force', embeddings, queries, k)
  recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approximate, exact)])
  assert recall >= 0.95, recall
  assert np.all(np.diff(approximate_scores, axis=1) <= 1e-5)  # best first


def test_parameters_search_small_catalogues_exhaustively():
  assert export.scann_parameters(1_682, 100) == {
      'num_leaves': 2, 'num_leaves_to_search': 2, 'num_reordering_candidates': 400}
  large = export.scann_parameters(1_000_000, 10)
  assert large['num_leaves'] == 1000 and 20 <= large['num_leaves_to_search'] <= 100


@pytest.mark.parametrize('num_candidates', [1, 4, 20])
def test_any_catalogue_size_gets_an_exact_index(num_candidates):
  """ScaNN needs 16 candidates to train its quantizer (fewer failed, one crashed the process):
  smaller catalogues are scored by brute force, and every size answers exactly."""
  rng = np.random.default_rng(1)
  embeddings = rng.normal(size=(num_candidates, 8)).astype(np.float32)
  queries = tf.constant(rng.normal(size=(5, 8)).astype(np.float32))
  k = min(10, num_candidates)
  positions, scores = _search('scann', embeddings, queries, k)
  exact = np.argsort(-(queries.numpy() @ embeddings.T), axis=1, kind='stable')[:, :k]
  np.testing.assert_array_equal(positions, exact)
  assert scores.shape == (5, k)
