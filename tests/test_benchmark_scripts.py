"""Every benchmark script imports and parses its arguments: the make bench-* targets are not run
in CI (they take minutes to hours), so a broken import would otherwise go unseen."""
import importlib
import pathlib

import pytest

SCRIPTS = sorted(path.stem for path in (pathlib.Path(__file__).parents[1] / 'benchmarks').glob(
    '*.py') if path.stem != '__init__')


def test_the_benchmarks_folder_holds_the_make_targets_scripts():
  assert {'pipeline', 'quality', 'replay', 'serving', 'continuous'} <= set(SCRIPTS)


@pytest.mark.parametrize('script', SCRIPTS)
def test_a_benchmark_script_imports_and_prints_its_help(script, capsys):
  module = importlib.import_module(f'benchmarks.{script}')
  with pytest.raises(SystemExit) as exited:
    module.main(['--help'])
  assert exited.value.code == 0
  assert f'python -m benchmarks.{script}' in capsys.readouterr().out
