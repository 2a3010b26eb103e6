"""Settings chosen for the data (components/model/data_settings.py, kinds' data_settings,
components/settings_gen.py): what each profile of training data gets, that the user's choices
are never replaced, and how SettingsGen reads TFDV statistics and records its choice. Runs
no pipeline: the pipeline's own run of it is in test_models.py."""
import json

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tfx.types import standard_artifacts

from components import features as f
from components import settings_gen
from components.model import data_settings, kinds
from components.model.config import DERIVED_FIELDS, ModelConfig
from pipeline import cli
from pipeline.pipeline import create_pipeline
from pipeline.config import PipelineConfig

SEQUENTIAL = kinds.of('sequential')
# The two MovieLens sets the rules come from (the train split: 70% of the ratings), and a
# catalogue larger than the full softmax takes (ml-latest-small's).
ML_100K = data_settings.DataProfile(ratings=56_000, users=750, movies=1_550)
ML_1M_HALF = data_settings.DataProfile(ratings=341_000, users=2_999, movies=3_560)
WIDE_CATALOGUE = data_settings.DataProfile(ratings=70_000, users=600, movies=8_000)


def _values(config: ModelConfig, profile: data_settings.DataProfile) -> dict:
  return {name: setting.value for name, setting in data_settings.derive(config, profile).items()}


def test_sparse_data_keeps_the_regularised_gru_and_dense_data_gets_self_attention():
  config = ModelConfig.tuned('sequential')
  sparse = _values(config, ML_100K)
  assert sparse['history_encoder'] == 'gru' and sparse['max_context_length'] == 20
  assert (sparse['embedding_l2'], sparse['query_dropout']) == (0.5, 0.3)
  assert data_settings.apply(config, sparse) == config  # the tuned settings already
  dense = data_settings.apply(config, _values(config, ML_1M_HALF))
  assert (dense.history_encoder, dense.max_context_length, dense.optimizer,
          dense.learning_rate, dense.batch_size) == ('attention', 200, 'adam', 0.001, 32)
  assert (dense.embedding_l2, dense.query_dropout) == (0.0, 0.0)
  assert dense.train_positions == 'every'
  reasons = {setting.reason for setting in data_settings.derive(config, ML_1M_HALF).values()}
  assert reasons == {f'96 training ratings a movie, at least '
                     f'{SEQUENTIAL.DENSE_RATINGS_PER_MOVIE}'}


def test_a_catalogue_past_the_full_softmax_trains_the_next_movie_on_in_batch_negatives():
  config = ModelConfig.tuned('sequential')
  chosen = data_settings.derive(config, WIDE_CATALOGUE)
  assert {name: chosen[name].value for name in
          ('train_positions', 'negatives', 'batch_size', 'history_encoder')} == {
              'train_positions': 'last', 'negatives': 'in-batch', 'batch_size': 1024,
              'history_encoder': 'gru'}
  assert '8,000 movies, more than --max-catalogue-negatives 5,000' in chosen[
      'train_positions'].reason
  # A larger full softmax allowed: every position again.
  assert 'train_positions' not in _values(
      ModelConfig.tuned('sequential', max_catalogue_negatives=10_000), WIDE_CATALOGUE)


def test_a_setting_the_user_chose_is_never_replaced_by_the_datas():
  given = cli.model_config_from_args(cli.build_parser().parse_args(
      ['run', '--history-encoder', 'gru', '--batch-size', '64']))
  assert set(given.fixed) == {'history_encoder', 'batch_size'}
  chosen = _values(given, ML_1M_HALF)
  # The encoder stays the GRU, and none of attention's companions (200 movies, Adam) come.
  assert not {'history_encoder', 'batch_size', 'max_context_length', 'optimizer'} & set(chosen)
  assert chosen == {'embedding_l2': 0.0, 'query_dropout': 0.0}
  # A value changed from the tuned one, even without a flag (a config built in code), stays.
  assert 'history_encoder' not in _values(
      ModelConfig.tuned('sequential', history_encoder='mean'), ML_1M_HALF)
  # Even a Tuner's hyperparameters do not replace a fixed field.
  tuner = {'values': {'history_encoder': 'attention', 'embedding_l2': 0.1}}
  applied = data_settings.apply(given, data_settings.values_of(tuner))
  assert (applied.history_encoder, applied.embedding_l2) == ('gru', 0.1)


def test_unset_flags_of_derived_fields_leave_them_to_the_data_and_the_help_says_so(capsys):
  config = cli.model_config_from_args(cli.build_parser().parse_args(['run']))
  assert config.fixed == () and config == ModelConfig.tuned('sequential')
  with pytest.raises(SystemExit):
    cli.main(['run', '--help'])
  help_text = ' '.join(capsys.readouterr().out.split())
  for name in DERIVED_FIELDS:
    flag = '--' + name.replace('_', '-')
    assert flag in help_text
  assert 'or chosen for the data' in help_text


def test_other_kinds_take_no_settings_from_the_data():
  for kind in ('retrieval', 'multitask'):
    assert data_settings.derive(ModelConfig.tuned(kind), ML_1M_HALF) == {}


def test_settings_gen_reads_the_train_splits_ratings_users_and_movies_and_records_its_choice(
    tmp_path):
  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = str(tmp_path / 'statistics')
  statistics.split_names = '["train", "eval"]'
  ratings = {'train': [(b'1', b'10'), (b'1', b'11'), (b'2', b'10'), (b'3', b'12')],
             'eval': [(b'4', b'13')]}
  for split, rows in ratings.items():
    frame = pd.DataFrame({f.USER_ID: [user for user, _ in rows],
                          f.MOVIE_ID: [movie for _, movie in rows]})
    stats = tfdv.generate_statistics_from_dataframe(frame)
    folder = tmp_path / 'statistics' / f'Split-{split}'
    folder.mkdir(parents=True)
    (folder / 'FeatureStats.pb').write_bytes(stats.SerializeToString())  # StatisticsGen's
  profile = settings_gen.profile_of(statistics)
  assert profile == data_settings.DataProfile(ratings=4, users=3, movies=3)

  output = standard_artifacts.HyperParameters()
  output.uri = str(tmp_path / 'hyperparameters')
  (tmp_path / 'hyperparameters').mkdir()
  chosen = data_settings.derive(ModelConfig.tuned('sequential'), ML_1M_HALF)
  settings_gen.record(output, profile, chosen)
  # The only file, in KerasTuner's layout: what TFX's Trainer reads as fn_args.hyperparameters.
  (written,) = (tmp_path / 'hyperparameters').iterdir()
  assert written.name == data_settings.HYPERPARAMETERS_FILE
  config = json.loads(written.read_text())
  assert data_settings.values_of(config) == {name: s.value for name, s in chosen.items()}
  assert {entry['config']['name'] for entry in config['space']} == set(chosen)
  assert output.get_string_custom_property('history_encoder') == 'attention'
  assert output.get_int_custom_property('max_context_length') == 200
  assert output.get_float_custom_property('learning_rate') == 0.001
  assert settings_gen.profile_recorded(output) == profile
  assert settings_gen.reasons(output)['optimizer'].startswith('96 training ratings a movie')


def test_both_trainers_and_the_model_card_read_the_settings_gen_output():
  components = {component.id: component for component in create_pipeline(
      PipelineConfig(data_dir='/data', workdir='/workdir')).components}
  settings = components['SettingsGen'].outputs['hyperparameters']
  for name in ('Trainer', 'Refit'):
    assert components[name].inputs['hyperparameters'] is settings
  assert components['ModelCard'].inputs['data_settings'] is settings
  assert components['TimelineGen'].inputs['data_settings'] is settings  # its windows' length
  assert (components['SettingsGen'].inputs['statistics']
          is components['StatisticsGen'].outputs['statistics'])
