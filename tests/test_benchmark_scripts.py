"""Every benchmark script imports and parses its arguments: the make bench-* targets are not run
in CI (they take minutes to hours), so a broken import would otherwise go unseen. And the
pipeline benchmark's verdicts on the targets, from made-up figures."""
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


def test_the_pipeline_benchmark_judges_each_target_on_its_largest_run():
  """Half a minute over 90 is over: the summary neither rounds a miss into a pass nor leaves
  the end-to-end target without a verdict."""
  from benchmarks.pipeline import EXAMPLE_GEN, Figure, Run, summary
  figures = [Figure(EXAMPLE_GEN, 200.0, 4000.0), Figure('Trainer', 1000.0, 3000.0)]
  small = Run('ml25m-shape-1M', 1_000_000, 'in-memory', [Figure(EXAMPLE_GEN, 20.0, 900.0),
                                                         Figure('Trainer', 100.0, 900.0)],
              600.0, 900.0)
  lines = summary([small, Run('ml25m-shape-10M', 10_000_000, 'in-memory', figures,
                              90.5 * 60, 8 * 1024 + 1)])
  assert 'in-memory: ExampleGen 50,000 ratings/s at 10,000,000 (target >= 25,000: met)' in lines
  assert 'in-memory: peak memory 8.0 GiB at 10,000,000 (target <= 8: NOT met)' in lines
  assert ('in-memory: 10,000,000 ratings end to end 90.5 min (target <= 90 with '
          '--ensemble-size 1: NOT met)') in lines
  assert any('Trainer x10.0 for x10.0 the ratings (met at most linear)' in line
             for line in lines)
