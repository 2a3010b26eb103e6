"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported."""
import pathlib

import pytest

import components  # noqa: F401  (process set-up before TensorFlow loads)
from components.ingest import synthetic

# Small enough for a pipeline run in a couple of minutes on 2 cores, big enough to learn from.
SMALL = dict(num_users=150, num_movies=200, num_ratings=6000, seed=3)


@pytest.fixture(scope='session')
def small_dataset(tmp_path_factory) -> pathlib.Path:
  """A synthetic ml-100k-format folder shared by the pipeline tests (read-only)."""
  return synthetic.generate(tmp_path_factory.mktemp('data') / 'synthetic', **SMALL)


@pytest.fixture(scope='session')
def tiny_base_path(tmp_path_factory) -> pathlib.Path:
  """A model base path holding the tiny model of tests/tiny_model.py (version 1), for tests of
  the server's HTTP and gRPC layers (read-only)."""
  from tests.tiny_model import save_tiny_model
  return save_tiny_model(tmp_path_factory.mktemp('models') / 'tiny')


TOP_K = 20
# The first_run's model: retrieval on the random split, pushed as gated (the tutorials' model;
# the default, sequential on the time split with a refit, has its own run in test_models.py).
RETRIEVAL = ('--model', 'retrieval', '--split', 'random', '--no-refit')


def run_pipeline(data_dir, workdir, *extra) -> int:
  """The CLI's `run` on small data: 5 epochs, top 20 in the serving model."""
  from pipeline import cli
  return cli.main(['run', '--data-dir', str(data_dir), '--workdir', str(workdir),
                   '--epochs', '5', '--top-k', str(TOP_K), *extra])


@pytest.fixture(scope='session')
def first_run(small_dataset, tmp_path_factory):
  """One blessed and pushed pipeline run of the retrieval model on the random split: (exit
  code, workdir, its MLMD results).

  Shared by the pipeline and serving tests, which ask it for users; tests that run again in
  this workdir must leave its pushed versions as they are. (The default model, sequential on
  the time split, has its own run in test_models.py.)
  """
  from pipeline.results import latest_run_results
  workdir = tmp_path_factory.mktemp('workdir')
  exit_code = run_pipeline(small_dataset, workdir, *RETRIEVAL, '--min-accuracy', '0.3')
  return exit_code, workdir, latest_run_results(str(workdir / 'metadata.sqlite'))
