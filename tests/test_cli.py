"""The CLI's arguments map onto the config, without running anything."""
import os

import pytest

from pipeline import beam_presets, cli


def _config(*argv):
  args = cli.build_parser().parse_args(['run', *argv])
  return cli.config_from_args(args, '/data')


def test_help_documents_every_run_option(capsys):
  with pytest.raises(SystemExit):
    cli.main(['run', '--help'])
  help_text = capsys.readouterr().out
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


def test_each_model_kind_starts_from_its_tuned_defaults_and_flags_override_them():
  from components.model.config import TUNED, TUNED_FIELDS
  for kind in ('retrieval', 'multitask', 'sequential'):
    model = _config('--model', kind).model
    assert model.kind == kind
    for name, value in TUNED[kind].items():
      assert getattr(model, name) == value
  overridden = _config('--model', 'retrieval', '--epochs', '3', '--embedding-l2', '0',
                       '--negatives', 'in-batch', '--temperature', '1', '--query-dropout', '0',
                       '--ensemble-size', '2').model
  assert {name: getattr(overridden, name) for name in TUNED_FIELDS} == {
      'epochs': 3, 'embedding_l2': 0.0, 'negatives': 'in-batch', 'temperature': 1.0,
      'query_dropout': 0.0, 'ensemble_size': 2}
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
