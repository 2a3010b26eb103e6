"""SpanWindow: the spans a run trains on, joined into one Examples artifact.

Its input is what TFX's SpanRangeStrategy resolver picked of ExampleGen's Examples (one per
ingested span, components/ingest/spans.py): the newest `--train-spans` spans. Its output is
what the model's examples are built from (TimelineGen, or the Transform of the ratings):
- eval: the newest span's eval split, which no model has trained on yet (with the time
  split, the newest span's last days). The gate compares the new model and the live one there.
- valid: the newest span's valid split, when it has one (the days before its eval split),
  which early stopping reads.
- train: everything else: the earlier spans whole (their valid and eval splits included:
  those are old news now) and the newest span's train split.
The files are copied, not parsed: every span's are gzipped TFRecords of tf.Examples.
"""
import dataclasses
import os
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from absl import logging
from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.types import Artifact, artifact_utils

from components import features as f
from components.ingest.spans import SPAN_PROPERTY, describe

EVAL_SPLIT = 'eval'
# The newest span's splits that keep their name; every other split folder is train.
HELD_OUT_SPLITS = (f.VALID_SPLIT, EVAL_SPLIT)
# The window's custom property naming the spans joined ('1-4').
SPANS_PROPERTY = 'spans'


@dataclasses.dataclass(frozen=True)
class SpanSplits:
  """One ingested span: its number and its split folders (split name -> folder)."""
  span: int
  split_uris: Mapping[str, str]


def window_splits(spans: Iterable[SpanSplits]) -> Dict[str, List[Tuple[int, str, str]]]:
  """Where each split folder of each span goes: {'train': [(span, split, folder)...],
  'valid': [...], 'eval': [...]}, oldest span first. Only the newest span's eval (and valid)
  split is eval (valid); 'valid' is there only when the newest span has one."""
  ordered = sorted(spans, key=lambda span: span.span)
  if not ordered:
    raise ValueError('no spans to join: ExampleGen has ingested none')
  newest = ordered[-1].span
  joined = {'train': [], **{split: [] for split in HELD_OUT_SPLITS
                             if split in ordered[-1].split_uris or split == EVAL_SPLIT}}
  for span in ordered:
    for split, uri in sorted(span.split_uris.items()):
      target = split if span.span == newest and split in HELD_OUT_SPLITS else 'train'
      joined[target].append((span.span, split, uri))
  return joined


def newest_per_span(artifacts: Iterable[Artifact]) -> List[Artifact]:
  """The latest artifact (highest MLMD id) of each span, oldest span first: a span folder
  ingested again (its files changed) replaces its earlier Examples."""
  latest = {}
  for artifact in artifacts:
    span = artifact.get_int_custom_property(SPAN_PROPERTY)
    if span not in latest or artifact.id > latest[span].id:
      latest[span] = artifact
  return [latest[span] for span in sorted(latest)]


def join_spans(spans: Sequence[Artifact], joined: Artifact) -> List[int]:
  """Fills the Examples artifact `joined` from the spans' Examples (window_splits); returns
  the span numbers joined, oldest first."""
  spans = newest_per_span(spans)
  numbers = [span.get_int_custom_property(SPAN_PROPERTY) for span in spans]
  splits = window_splits(
      SpanSplits(number, {split: artifact_utils.get_split_uri([span], split)
                          for split in artifact_utils.decode_split_names(span.split_names)})
      for number, span in zip(numbers, spans))
  for target, sources in splits.items():
    folder = os.path.join(joined.uri, f'Split-{target}')
    fileio.makedirs(folder)
    for number, split, uri in sources:
      for path in sorted(fileio.glob(os.path.join(uri, '*'))):
        fileio.copy(path, os.path.join(folder, f'span-{number}-{split}-{os.path.basename(path)}'),
                    overwrite=True)
  joined.split_names = artifact_utils.encode_split_names(list(splits))
  joined.set_int_custom_property(SPAN_PROPERTY, numbers[-1])
  joined.set_string_custom_property(SPANS_PROPERTY, describe(numbers))
  examples_utils.set_payload_format(joined, examples_utils.get_payload_format(spans[-1]))
  return numbers


@tfx.dsl.components.component
def SpanWindow(
    spans: tfx.dsl.components.InputArtifact[List[tfx.types.standard_artifacts.Examples]],
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples]
) -> None:
  """Joins the resolved spans (the latest artifact of each span number) into one Examples
  artifact: eval (valid) is the newest span's eval (valid) split, train all the rest (module
  docstring)."""
  numbers = join_spans(spans, examples)
  missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
  logging.info('SpanWindow: trains on span%s %s, evaluates on span %d\'s eval split%s',
               's' if len(numbers) > 1 else '', describe(numbers), numbers[-1],
               f'; spans {describe(missing)} were never ingested (ExampleGen reads the newest '
               'span folder on each run: run once per span)' if missing else '')
