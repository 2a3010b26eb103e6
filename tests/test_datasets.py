"""--dataset and --data-dir: which raw folder a run ingests (pipeline/datasets.py), for every
dataset GroupLens publishes that we download, with no network (a filled cache or a folder)."""

import pytest

from components.ingest import movielens, synthetic
from pipeline import cli, datasets

CSV_FAMILY = ('ml-latest-small', 'ml-20m', 'ml-25m', 'ml-32m')
TINY = dict(num_users=8, num_movies=12, num_ratings=60, seed=5)


@pytest.fixture(scope='module')
def csv_folder(tmp_path_factory):
  return synthetic.generate(tmp_path_factory.mktemp('data') / 'csv', fmt='csv', **TINY)


def test_every_downloadable_dataset_is_a_choice_after_synthetic():
  assert datasets.DATASETS == ('synthetic', 'ml-100k', 'ml-1m', *CSV_FAMILY)


@pytest.mark.parametrize('name', CSV_FAMILY)
def test_the_command_line_accepts_each_csv_dataset(name):
  assert cli.build_parser().parse_args(['run', '--dataset', name]).dataset == name


@pytest.mark.parametrize('name', CSV_FAMILY)
def test_a_csv_dataset_in_the_cache_is_used_without_downloading(tmp_path, name):
  """The download's folder, named after the dataset, holding ratings.csv: found as complete,
  so the run starts offline."""
  cache = tmp_path / 'cache'
  synthetic.generate(cache / name, fmt='csv', **TINY)
  folder = datasets.resolve_data_dir(name, str(tmp_path / 'work'), cache_dir=str(cache))
  assert folder == (cache / name).resolve()
  assert movielens.detect_format(folder) == 'csv'


def test_a_csv_data_dir_is_read_as_csv_without_a_note_for_a_csv_dataset(csv_folder, tmp_path,
                                                                        capsys):
  folder = datasets.resolve_data_dir('ml-25m', str(tmp_path / 'work'), str(csv_folder))
  assert folder == csv_folder.resolve()
  assert capsys.readouterr().out == ''


def test_a_csv_data_dir_under_another_datasets_name_is_noted(csv_folder, tmp_path, capsys):
  datasets.resolve_data_dir('ml-1m', str(tmp_path / 'work'), str(csv_folder))
  assert capsys.readouterr().out == (
      f'note: --dataset ml-1m but {csv_folder} holds csv files; reading it as csv\n')


def test_span_folders_of_csv_files_are_detected(tmp_path, capsys):
  spans_dir = tmp_path / 'spans'
  for span in (1, 2):
    synthetic.generate(spans_dir / f'span-{span}', fmt='csv', **dict(TINY, seed=span))
  assert datasets.resolve_data_dir('ml-32m', str(tmp_path / 'work'), str(spans_dir)) == (
      spans_dir.resolve())
  assert capsys.readouterr().out == ''


def test_synthetic_data_stays_in_ml100k_format(tmp_path):
  size = datasets.SyntheticSize(num_users=8, num_movies=12, num_ratings=60, seed=5)
  folder = datasets.resolve_data_dir('synthetic', str(tmp_path / 'work'), synthetic_size=size)
  assert movielens.detect_format(folder) == 'ml-100k'


def test_an_unknown_dataset_is_refused_naming_the_choices(tmp_path):
  with pytest.raises(ValueError, match="'ml-10m' is not one of .*ml-32m"):
    datasets.resolve_data_dir('ml-10m', str(tmp_path))
