"""The CLI's arguments map onto the config, without running anything."""
import argparse
import dataclasses
import os
import re

import pytest

from components.model.config import ModelConfig
from pipeline import beam_presets, cli


def _config(*argv):
  args = cli.build_parser().parse_args(['run', *argv])
  return cli.config_from_args(args, '/data', rating_scale='whole-stars')


@pytest.fixture
def run_help(capsys) -> str:
  """The options part of `run --help`, its lines joined: each option's entry on one line."""
  with pytest.raises(SystemExit):
    cli.main(['run', '--help'])
  return ' '.join(capsys.readouterr().out.split('\noptions:', 1)[1].split())


@pytest.fixture
def run_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser()
  cli.add_run_arguments(parser)
  return parser


def _help_of(help_text: str, option: str) -> str:
  """One option's help, from its joined `--help` text: up to the next option."""
  return re.search(rf'{option} (.*?)(?= --[a-z])', help_text).group(1)


def test_help_documents_every_run_option(run_help):
  help_text = run_help
  for option in ('--dataset', '--data-dir', '--model', '--workdir', '--epochs', '--beam-arg',
                 '--beam-preset', '--split', '--top-k', '--index', '--min-accuracy', '--gate-k'):
    assert option in help_text


def test_beam_preset_comes_first_and_explicit_args_win():
  config = _config('--beam-preset', 'multi-processing', '--beam-arg=--direct_num_workers=3')
  assert config.beam_args[0] == '--direct_running_mode=multi_processing'
  assert config.beam_args[-1] == '--direct_num_workers=3'
  assert _config().beam_args == beam_presets.PRESETS['in-memory']


def test_model_options_reach_the_model_config():
  config = _config('--epochs', '3', '--layer-sizes', '128,32', '--use-timestamps', '--no-title',
                   '--index', 'brute-force', '--top-k', '10', '--min-accuracy', '0.25')
  assert (config.model.epochs, config.model.layer_sizes) == (3, (128, 32))
  assert config.model.use_timestamps and not config.model.use_title
  assert (config.model.index, config.model.top_k, config.min_accuracy) == ('brute-force', 10, 0.25)


def test_bad_values_are_refused_with_the_field_name():
  with pytest.raises(ValueError, match='epochs'):
    _config('--epochs', '0')
  with pytest.raises(ValueError, match='eval_percent'):
    _config('--eval-percent', '100')


def test_the_default_is_the_sequential_model_gated_on_the_future():
  config = _config()
  assert (config.model.kind, config.split) == ('sequential', 'time')
  assert config.model == _config('--model', 'sequential').model  # with its tuned settings


def test_leave_last_out_is_refused_for_a_model_that_does_not_read_timelines():
  with pytest.raises(ValueError, match="split 'last'.*'retrieval'"):
    _config('--model', 'retrieval', '--split', 'last')


def test_every_position_training_is_refused_without_timelines_or_with_the_random_split():
  every = ('--train-positions', 'every')
  assert _config(*every).model.train_positions == 'every' and _config(*every).refit
  with pytest.raises(ValueError, match="'every'.*'retrieval'"):
    _config('--model', 'retrieval', *every)
  with pytest.raises(ValueError, match="random split's eval movies"):
    _config('--split', 'random', *every)


def test_each_model_kind_starts_from_its_tuned_defaults_and_flags_override_them():
  from components.model.config import TUNED, TUNED_FIELDS
  for kind in ('retrieval', 'multitask', 'sequential'):
    model = _config('--model', kind).model
    assert model.kind == kind
    for name, value in TUNED[kind].items():
      assert getattr(model, name) == value
  overridden = _config('--model', 'retrieval', '--epochs', '3', '--embedding-l2', '0',
                       '--negatives', 'in-batch', '--temperature', '1', '--query-dropout', '0',
                       '--ensemble-size', '2', '--max-context-length', '7',
                       '--train-positions', 'last', '--batch-size', '256').model
  assert {name: getattr(overridden, name) for name in TUNED_FIELDS} == {
      'epochs': 3, 'embedding_l2': 0.0, 'negatives': 'in-batch', 'temperature': 1.0,
      'query_dropout': 0.0, 'ensemble_size': 2, 'max_context_length': 7,
      'train_positions': 'last', 'batch_size': 256}
  multitask = _config('--model', 'multitask', '--rating-weight', '2', '--retrieval-weight',
                      '0.5', '--max-rmse', '0.9')
  assert (multitask.model.rating_weight, multitask.model.retrieval_weight) == (2.0, 0.5)
  assert multitask.max_rmse == 0.9
  sequential = _config('--model', 'sequential', '--max-context-length', '5', '--min-rating',
                       '3', '--min-timeline-length', '4', '--timeline-eval-percent', '20')
  assert sequential.model.max_context_length == 5
  assert (sequential.min_rating, sequential.min_timeline_length,
          sequential.timeline_eval_percent) == (3.0, 4, 20)


def test_quiet_runs_keep_progress_lines_errors_and_our_components_lines_only():
  import logging

  import components
  from pipeline.cli import _ProgressFilter
  trainer_file = os.path.join(os.path.dirname(components.__file__), 'trainer.py')

  def kept(message, args=(), level=logging.INFO, path='/site-packages/tfx/orchestration.py'):
    record = logging.LogRecord('absl', level, path, 1, message, args, None)
    return _ProgressFilter().filter(record)

  assert kept('Component %s is running.', ('Trainer',))
  assert kept('Training ensemble member %d of %d (seed %d)', (2, 3, 43), path=trainer_file)
  assert not kept('Training ensemble member %d of %d (seed %d)', (2, 3, 43))  # not ours
  assert not kept('Running driver for %s', ('Trainer',))
  assert kept('Trainer failed', level=logging.ERROR)


def test_help_prints_each_default_once(run_help):
  assert not re.search(r'\(default: [^)]*\) \(default:', run_help)
  assert '(default: None)' not in run_help
  assert _help_of(run_help, '--split').count('default') == 1


def test_switches_that_are_on_by_default_say_the_flag_turns_them_off(run_help):
  for option in ('--no-title', '--no-genres'):
    switch_help = _help_of(run_help, option)
    assert 'True' not in switch_help
    assert switch_help.startswith('turn off') and switch_help.endswith('(on by default)')
  assert _help_of(run_help, '--use-timestamps').endswith('(off by default)')


def test_every_run_flag_has_help_text(run_parser):
  for action in run_parser._actions:  # pylint: disable=protected-access
    assert action.help, f'{action.option_strings} has no help'


def test_every_model_config_field_is_a_flag_carrying_its_help_but_the_datas_rating_scale(
    run_parser):
  flag_helps = [action.help for action in run_parser._actions]  # pylint: disable=protected-access
  fields = dataclasses.fields(ModelConfig)
  # rating_scale: the data's; fixed: the given flags themselves.
  for field in fields:
    if field.name not in ('rating_scale', 'fixed'):
      assert any(field.metadata['help'] in flag_help for flag_help in flag_helps), field.name
  assert not any(action.dest in ('rating_scale', 'fixed')
                 for action in run_parser._actions)  # pylint: disable=protected-access


def test_the_rating_scale_comes_from_the_datas_format(tmp_path):
  (tmp_path / 'ratings.csv').write_text('userId,movieId,rating,timestamp\n1,1,3.5,964982703\n')
  args = cli.build_parser().parse_args(['run'])
  assert cli.config_from_args(args, str(tmp_path)).model.rating_scale == 'half-stars'


def test_a_layer_list_that_does_not_parse_is_refused_naming_its_flag(capsys):
  with pytest.raises(SystemExit):
    cli.build_parser().parse_args(['run', '--layer-sizes', 'abc'])
  assert "argument --layer-sizes: expected comma-separated integers such as 128,64, got 'abc'" \
      in capsys.readouterr().err


def test_model_config_read_back_refuses_a_key_it_does_not_know_naming_it_and_the_known_ones():
  values = {**ModelConfig().to_dict(), 'embeding_dim': 32}
  with pytest.raises(ValueError, match=r"no field 'embeding_dim' \(known: kind, embedding_dim,"):
    ModelConfig.from_dict(values)


def test_model_config_read_back_restores_what_to_dict_wrote():
  config = ModelConfig.tuned('multitask', layer_sizes=(128, 32), use_title=False)
  assert ModelConfig.from_dict(config.to_dict()) == config


def test_recommend_reads_the_model_name_run_pushes_to_by_default():
  recommend_args = cli.build_parser().parse_args(['recommend', '--user', '1'])
  assert recommend_args.model_name == _config().serving_model_name
