"""`python -m pipeline replay`: a MovieLens dataset replayed as data arriving in spans.

Cuts the ratings into spans by time (components/ingest/spans.py write_spans) and runs the
pipeline once per span, as a scheduler would after each span arrives: one workdir, one serving
model base path, one models.config. Span 1 holds every rating before --from (the history a
deployment starts with); each later span holds --span-days of ratings, up to --until.

Between runs the canary the previous run pushed has served its span: `--canary promote` (the
default) makes it stable before the next span arrives, `hold` leaves it (later pushes are then
held on disk, serving/rollout.py). Each run's outcome goes to <workdir>/replay/runs.json,
which also makes the replay resumable: run the same command again and it goes on from the
first span without an outcome.
"""
import argparse
import dataclasses
import datetime
import json
import os
import shutil
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

from components.ingest import movielens, spans

DAY = 24 * 3600
CANARY_POLICIES = ('promote', 'hold')


def parse_date(text: str) -> int:
  """'YYYY-MM-DD' (UTC midnight) -> seconds since 1970."""
  try:
    day = datetime.datetime.strptime(text, '%Y-%m-%d').replace(tzinfo=datetime.timezone.utc)
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected a date as YYYY-MM-DD, got {text!r}') from None
  return int(day.timestamp())


def date_of(timestamp: Optional[int]) -> str:
  if timestamp is None:
    return 'start'
  return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime('%Y-%m-%d')


def span_boundaries(timestamps: Sequence[int], span_days: float, start: Optional[int] = None,
                    until: Optional[int] = None, first_share: float = 0.8) -> List[int]:
  """The boundaries write_spans cuts at: start, start + span_days, ..., until.

  start: the end of span 1 (default: the time by which first_share of the ratings were made,
    so span 1 is the history a deployment starts with). until: ratings at or after it are
    left out (default: none are).
  """
  if span_days <= 0:
    raise ValueError(f'--span-days must be positive, got {span_days}')
  ordered = np.sort(np.asarray(timestamps, dtype=np.int64))
  if start is None:
    start = int(ordered[min(len(ordered) - 1, int(len(ordered) * first_share))])
  until = int(ordered[-1]) + 1 if until is None else until
  if not ordered[0] < start < until:
    raise ValueError(f'--from {date_of(start)} must lie after the first rating '
                     f'({date_of(int(ordered[0]))}) and before --until {date_of(until)}')
  step = int(span_days * DAY)
  boundaries = list(range(start, until, step))
  return boundaries + [until]


@dataclasses.dataclass
class SpanRun:
  """One span's run, as runs.json records it."""
  span: int
  start: str
  end: str
  ratings: int
  exit_code: int
  blessed: Optional[bool]
  pushed_version: Optional[str]
  rollout: Optional[str]
  canary: Optional[str]  # what --canary did before this run
  metrics: dict
  baseline_metrics: dict
  seconds: float
  component_seconds: dict  # component id -> wall seconds (cached ones about 0)


class ReplayError(Exception):
  """The replay cannot start or go on (a changed cut, a data dir that is not its own)."""


@dataclasses.dataclass
class Record:
  """runs.json: the cut (source and boundaries), the spans it made ((start, end, ratings)
  each, as write_spans wrote them) and the runs so far (SpanRun's fields)."""
  cut: dict
  spans: List[list]
  runs: List[dict]

  @classmethod
  def load(cls, path: str, cut: dict) -> Optional['Record']:
    """The record of the replay in progress, or None for a new one; ReplayError if it was
    cut differently."""
    if not os.path.exists(path):
      return None
    with open(path, encoding='utf-8') as file:
      record = cls(**json.load(file))
    if record.cut != cut:
      raise ReplayError(f'{path} records a replay cut differently ({record.cut}, now {cut}): '
                        'pass the same --from/--until/--span-days, or another --workdir')
    return record

  def save(self, path: str) -> None:
    temporary = path + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as file:
      json.dump(dataclasses.asdict(self), file, indent=1)
    os.replace(temporary, path)


def _promote_canary(config) -> Optional[str]:
  """Promotes a live canary of the replay's model; what it did, or None."""
  from serving import rollout
  path = os.path.join(config.serving_models_dir, rollout.CONFIG_NAME)
  if not os.path.exists(path):
    return None
  try:
    return rollout.promote(path, config.serving_model_name).message
  except rollout.RolloutError:  # no canary live
    return None


def replay(args: argparse.Namespace, run_span) -> int:
  """Runs the pipeline once per span (run_span(args for that span) -> exit code).

  Returns 0 when every span ran (whether or not its model was blessed), 1 if a run failed,
  2 for a bad cut or data folder.
  """
  from pipeline import cli, datasets
  from pipeline.results import latest_run_results

  workdir = os.path.abspath(args.workdir)
  replay_dir = os.path.join(workdir, 'replay')
  data_dir, pending_dir = os.path.join(replay_dir, 'data'), os.path.join(replay_dir, 'pending')
  runs_path = os.path.join(replay_dir, 'runs.json')
  try:
    source = datasets.resolve_data_dir(args.dataset, args.workdir, args.data_dir,
                                       args.cache_dir, cli.synthetic_size(args))
    if spans.span_numbers(source):
      raise ReplayError(f'{source} holds span folders already: replay cuts a plain MovieLens '
                        'folder into spans; `run` reads span folders as they are')
    timestamps = [rating.timestamp for _, rating in movielens.iter_every_rating(source)]
    boundaries = span_boundaries(timestamps, args.span_days, args.start, args.until,
                                 first_share=1 - args.eval_percent / 100)
    cut = {'source': str(source), 'boundaries': boundaries}
    record = Record.load(runs_path, cut)
  except (ReplayError, ValueError, movielens.MovieLensFormatError) as error:
    print(f'error: {cli.user_error_message(error) or error}', file=sys.stderr)
    return 2

  if record is None:  # a new replay: every span written ahead, to arrive one by one
    staging = pending_dir + '.tmp'
    shutil.rmtree(staging, ignore_errors=True)
    written = spans.write_spans(source, staging, boundaries)
    record = Record(cut, [[span.start, span.end, span.num_ratings] for span in written], [])
    for leftover in (pending_dir, data_dir):
      shutil.rmtree(leftover, ignore_errors=True)
    os.replace(staging, pending_dir)
    record.save(runs_path)  # the cut, so a resumed replay must cut the same
  runs = record.runs
  print(f'Replay:   {source} cut into {len(record.spans)} spans (span 1: before '
        f'{date_of(boundaries[0])}, then {args.span_days:g} days each until '
        f'{date_of(boundaries[-1])}); {len(runs)} ran before')
  failed = False
  for number, (start, end, count) in enumerate(record.spans, start=1):
    if number <= len(runs):
      continue
    pending, arrived = spans.span_folder(pending_dir, number), spans.span_folder(data_dir, number)
    if os.path.isdir(pending):  # the span arrives (a run that died after this goes again)
      os.makedirs(data_dir, exist_ok=True)
      shutil.rmtree(arrived, ignore_errors=True)
      os.replace(pending, arrived)
    print(f'\n=== Span {number}/{len(record.spans)}: {date_of(start)} .. {date_of(end)}, '
          f'{count:,} ratings ===')
    # The span folders as --data-dir (the dataset named is read from them now).
    span_args = argparse.Namespace(**{**vars(args), 'data_dir': data_dir})
    config = cli.config_from_args(span_args, data_dir)
    canary = _promote_canary(config) if args.canary == 'promote' else None
    if canary:
      print(f'Canary promoted before this span: {canary}')
    started = time.time()
    exit_code = run_span(span_args)
    seconds = time.time() - started
    results = latest_run_results(config.metadata_path)
    runs.append(dataclasses.asdict(SpanRun(
        number, date_of(start), date_of(end), count, exit_code, results.blessed,
        os.path.basename(results.pushed_path) if results.pushed else None, results.rollout,
        canary, results.metrics, results.baseline_metrics, round(seconds, 1),
        {component: round(took, 1) for component, took in results.component_seconds})))
    record.save(runs_path)
    failed |= exit_code == 1
  print_summary(runs, runs_path, args.gate_k)
  return 1 if failed else 0


def print_summary(runs: List[dict], runs_path: str, gate_k: int) -> None:
  metric = f'top_{gate_k}_accuracy'
  print(f'\nReplay: {len(runs)} spans ({runs_path})')
  print(f'  {"span":>4} {"from":>10} {"until":>10} {"ratings":>8} {"exit":>4} '
        f'{metric + " new":>22} {"live":>6} {"pushed":>11} {"seconds":>8}')
  for run in runs:
    new, live = run['metrics'].get(metric), run['baseline_metrics'].get(metric)
    print(f'  {run["span"]:>4} {run["start"]:>10} {run["end"]:>10} {run["ratings"]:>8,} '
          f'{run["exit_code"]:>4} {_number(new):>22} {_number(live):>6} '
          f'{run["pushed_version"] or "-":>11} {run["seconds"]:>8.0f}')


def _number(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.4f}'
