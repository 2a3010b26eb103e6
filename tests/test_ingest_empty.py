"""Ingestion stops, naming the file or the split, when it would hand on nothing to learn from."""

import re

import pytest
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.ingest import example_gen, movielens
from components.ingest.movielens import MovieLensFormatError
from tests.test_movielens_readers import ML100K_FILES, replace_file, write_dataset

SPLITS = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
    example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=8),
    example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=2)]))


@pytest.fixture
def ml100k(tmp_path):
  return write_dataset(tmp_path / 'ml-100k', ML100K_FILES)


@pytest.fixture
def run_example_gen(tmp_path):
  """Runs an ExampleGen executor's Do on a raw folder, as FileBasedExampleGen does (8:2)."""
  def run(executor_class, data_dir):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / 'examples')
    executor_class().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
        standard_component_specs.INPUT_BASE_KEY: str(data_dir),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='raw', pattern='*')])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(SPLITS),
    })
  return run


def test_an_empty_ratings_file_stops_example_gen_naming_the_file(ml100k, run_example_gen):
  replace_file(ml100k, 'u.data', '')
  with pytest.raises(MovieLensFormatError,
                     match=re.escape(f"{ml100k / 'u.data'}: no ratings in the ratings file "
                                     '(it is empty)')):
    run_example_gen(example_gen.Executor, ml100k)


def test_a_ratings_file_of_blank_lines_is_refused_like_an_empty_one(ml100k):
  replace_file(ml100k, 'u.data', '\n\r\n\n')
  with pytest.raises(MovieLensFormatError,
                     match=re.escape(f"{ml100k / 'u.data'}: no ratings in the ratings file "
                                     '(it holds only blank lines)')):
    list(movielens.iter_examples(ml100k))


@pytest.mark.parametrize('name, kind', [('u.item', 'movies'), ('u.user', 'users')])
def test_an_empty_movies_or_users_file_is_refused_naming_it(ml100k, name, kind):
  replace_file(ml100k, name, '')
  with pytest.raises(MovieLensFormatError,
                     match=re.escape(f'{ml100k / name}: no {kind} in the {kind} file')):
    list(movielens.iter_examples(ml100k))


def test_a_random_split_left_without_examples_stops_example_gen_naming_it(
    ml100k, run_example_gen):
  replace_file(ml100k, 'u.data', '1\t10\t4\t881250949\n')  # one rating: one split stays empty
  with pytest.raises(MovieLensFormatError,
                     match=r"the '(train|eval)' split got no examples \(train \d, eval \d, of 1 "
                           r'rating in all\); the random split sends each rating'):
    run_example_gen(example_gen.Executor, ml100k)


def test_a_time_split_whose_ratings_share_one_moment_names_the_empty_train_split(
    ml100k, run_example_gen):
  replace_file(ml100k, 'u.data', '1\t10\t4\t881250949\n2\t20\t3\t881250949\n')
  with pytest.raises(MovieLensFormatError,
                     match=re.escape(f"{ml100k}: the 'train' split got no examples (train 0, "
                                     'eval 2, of 2 ratings in all); the time split trains on '
                                     'the ratings strictly before the cutoff')):
    run_example_gen(example_gen.TimeSplitExecutor, ml100k)
