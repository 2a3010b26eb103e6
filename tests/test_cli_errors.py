"""The CLI's failures outside the pipeline itself: one line naming the path and what to do, a
non-zero exit code; and a workdir that a run which died, or a run still going, left behind."""
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
Execution = metadata_store_pb2.Execution


def _cli(*argv) -> subprocess.CompletedProcess:
  """`python -m pipeline ...` in its own process, as a user runs it."""
  return subprocess.run([sys.executable, '-m', 'pipeline', *map(str, argv)], cwd=REPO,
                        capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def held_workdir(tmp_path):
  """A workdir whose lock another process holds, as a run in progress does: (path, process)."""
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from pipeline import cli\n'
       'with cli.workdir_lock(sys.argv[1]):\n  print("locked", flush=True); time.sleep(300)',
       str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  yield tmp_path, holder
  holder.kill()
  holder.wait()


@pytest.fixture
def dead_runs_store(tmp_path) -> str:
  """An MLMD sqlite file in which a run that died left its Trainer RUNNING, after a complete
  ExampleGen: its path."""
  path = str(tmp_path / 'metadata.sqlite')
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = path
  connection.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
  store = metadata_store.MetadataStore(connection)
  node_type = store.put_context_type(metadata_store_pb2.ContextType(name='node'))
  for component, state in (('FileBasedExampleGen', Execution.COMPLETE),
                           ('Trainer', Execution.RUNNING)):
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name=component))
    [execution_id] = store.put_executions([Execution(type_id=type_id, last_known_state=state)])
    [node_id] = store.put_contexts([metadata_store_pb2.Context(
        type_id=node_type, name=f'movielens-recommender.{component}')])
    store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(execution_id=execution_id, context_id=node_id)])
  return path


def _states(metadata_path: str):
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  store = metadata_store.MetadataStore(connection)
  return sorted(Execution.State.Name(execution.last_known_state)
                for execution in store.get_executions())


def test_recommend_without_a_pushed_model_prints_one_line_naming_the_folder(tmp_path):
  result = _cli('recommend', '--workdir', tmp_path, '--user', '1')
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert result.stderr.splitlines() == [
      f'error: no model version under {tmp_path}/serving_models/sequential: run the pipeline '
      'first (make demo), or check that the model was blessed and pushed']


def test_a_workdir_that_cannot_be_written_is_named_in_one_line(tmp_path):
  (tmp_path / 'file.txt').write_text('a file, not a folder: even root cannot write under it')
  workdir = tmp_path / 'file.txt' / 'workdir'
  result = _cli('run', '--workdir', workdir)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      f'error: cannot write to {workdir} (Not a directory): pass --workdir a folder you can '
      'write to']


def test_a_second_run_on_a_workdir_in_use_is_refused_naming_the_other_run(held_workdir, capsys):
  workdir, holder = held_workdir
  assert cli.main(['run', '--workdir', str(workdir)]) == 2
  assert capsys.readouterr().err == (
      f'error: another run (pid {holder.pid}) is using the workdir {workdir}: wait for it to '
      'end, or pass another --workdir\n')


def test_a_killed_run_leaves_no_lock_behind(held_workdir):
  workdir, holder = held_workdir
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with cli.workdir_lock(str(workdir)):
    assert (workdir / cli.LOCK_FILE).read_text() == f'{os.getpid()}\n'


def test_executions_a_dead_run_left_running_are_marked_failed(dead_runs_store):
  from pipeline.results import fail_abandoned_executions
  assert fail_abandoned_executions(dead_runs_store) == ['Trainer']
  assert _states(dead_runs_store) == ['COMPLETE', 'FAILED']


def test_the_next_run_marks_a_dead_runs_executions_failed_before_the_pipeline_starts(
    dead_runs_store, small_dataset, monkeypatch, capsys):
  from tfx import v1 as tfx

  from pipeline import pipeline as pipeline_module
  states_at_start = []

  class Runner:
    def run(self, unused_pipeline, run_options=None):  # pylint: disable=unused-argument
      states_at_start.extend(_states(dead_runs_store))

  monkeypatch.setattr(tfx.orchestration, 'LocalDagRunner', Runner)
  monkeypatch.setattr(pipeline_module, 'create_pipeline', lambda config: None)
  monkeypatch.setattr(cli, 'print_results', lambda config: 0)
  workdir = os.path.dirname(dead_runs_store)
  assert cli.main(['run', '--workdir', workdir, '--data-dir', str(small_dataset)]) == 0
  assert states_at_start == ['COMPLETE', 'FAILED']
  assert ('Marked FAILED in MLMD: Trainer, left running by an earlier run whose process died'
          in capsys.readouterr().out)


def test_stop_after_runs_the_components_up_to_one_and_names_the_choices_when_unknown(
    small_dataset, tmp_path, capsys):
  from pipeline.results import latest_run_results
  workdir = tmp_path / 'partial'
  assert cli.main(['run', '--workdir', str(workdir), '--data-dir', str(small_dataset),
                   '--stop-after', 'NoSuchComponent']) == 2
  assert ('--stop-after NoSuchComponent: no such component; the pipeline has '
          'FileBasedExampleGen, ') in capsys.readouterr().err
  assert cli.main(['run', '--workdir', str(workdir), '--data-dir', str(small_dataset),
                   '--stop-after', 'FileBasedExampleGen']) == 0
  ran = [window[0] for window in
         latest_run_results(str(workdir / 'metadata.sqlite')).component_windows]
  assert ran == ['FileBasedExampleGen']
