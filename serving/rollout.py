"""Canary rollouts with TF Serving's version labels: the models.config that the Pusher and
operators edit, and the servers (TF Serving or ours) re-read.

Each model's entry serves the `specific` versions its labels name:

    stable   the version that takes the traffic (clients ask /labels/stable)
    canary   a newer version on trial beside it, while one is (clients sending a share of their
             traffic to /labels/canary compare the two)

    push N     first push: N is stable. Later: N becomes the canary beside stable; while a canary
               is live the push is held (N stays on disk, unlabelled): one trial at a time.
    promote    stable := canary; the old stable version is unloaded.
    rollback   the canary is dropped and unloaded; stable is untouched.

Every move only adds a label that did not exist (canary) or moves one to a version that is
loaded (stable := canary), which is what TF Serving accepts on a reload with
--allow_version_labels_for_unavailable_models; a request on stable never finds it unloaded.
The file is replaced atomically (a new file renamed over the old), so a server polling it, or
a run that crashes, never sees half a config.

    python -m serving.rollout status   --config serving_models/models.config
    python -m serving.rollout promote  --config serving_models/models.config --model-name sequential
    python -m serving.rollout rollback --config ... --model-name sequential
    python -m serving.rollout canary   --config ... --model-name sequential --version 7
"""
import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.recommendations import DEFAULT_MODEL_NAME

STABLE, CANARY = 'stable', 'canary'
CONFIG_NAME = 'models.config'  # beside the model folders: <serving models>/models.config


class RolloutError(ValueError):
  """A move that does not apply (no canary to promote, an unknown model): nothing written."""


@dataclasses.dataclass(frozen=True)
class Rollout:
  """One model's labels after a move, and what the move did, in a sentence."""
  model_name: str
  stable: Optional[int]
  canary: Optional[int]
  message: str


def _read(path: str) -> model_server_config_pb2.ModelServerConfig:
  config = model_server_config_pb2.ModelServerConfig()
  if not _exists(path):
    return config
  try:
    text_format.Parse(_read_text(path), config)
  except text_format.ParseError as error:
    raise RolloutError(f'{path}: Error parsing text-format tensorflow.serving.ModelServerConfig: '
                       f'{error}') from None
  return config


def _is_remote(path: str) -> bool:
  return '://' in path


def _exists(path: str) -> bool:
  if _is_remote(path):
    import tensorflow as tf  # only for gs:// and the like: local moves need no TensorFlow
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def _read_text(path: str) -> str:
  if _is_remote(path):
    import tensorflow as tf
    with tf.io.gfile.GFile(path) as file:
      return file.read()
  with open(path, encoding='utf-8') as file:
    return file.read()


def write_atomically(path: str, text: str) -> None:
  """Replaces path's content in one step: a reader sees the old file or the new, never part.

  Locally a temporary file beside it is renamed over it (atomic on POSIX); object stores
  (gs://, s3://) replace an object whole on upload."""
  if _is_remote(path):
    import tensorflow as tf
    with tf.io.gfile.GFile(path, 'w') as file:
      file.write(text)
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  descriptor, temporary = tempfile.mkstemp(prefix='.models.config.', dir=folder)
  try:
    with os.fdopen(descriptor, 'w', encoding='utf-8') as file:
      file.write(text)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temporary, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temporary)
    raise


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
  """Serialises local read-modify-write cycles (the Pusher and an operator at once)."""
  if _is_remote(path):
    yield  # object stores have no locks: one writer at a time is the caller's to keep
    return
  import fcntl
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.lock', 'w', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _entry(config, model_name: str, path: str, base_path: Optional[str] = None):
  for entry in config.model_config_list.config:
    if entry.name == model_name:
      return entry
  if base_path is None:
    known = [entry.name for entry in config.model_config_list.config]
    raise RolloutError(f'{path}: no model {model_name!r} (models: {", ".join(known) or "none"})')
  return config.model_config_list.config.add(name=model_name, base_path=base_path,
                                              model_platform='tensorflow')


def _set(entry, stable: int, canary: Optional[int]) -> None:
  """Serves exactly the labelled versions."""
  entry.version_labels.clear()
  entry.version_labels[STABLE] = stable
  if canary is not None:
    entry.version_labels[CANARY] = canary
  entry.model_version_policy.specific.Clear()
  entry.model_version_policy.specific.versions.extend(sorted({stable, canary} - {None}))


def _labels(entry):
  labels = dict(entry.version_labels)
  return labels.get(STABLE), labels.get(CANARY)


def _move(path: str, model_name: str, change, base_path: Optional[str] = None) -> Rollout:
  """Reads path, lets change(entry, stable, canary) -> message edit the model's entry, and
  writes the result atomically if it differs (nothing, if change raises: an unchanged re-run's
  push leaves the file, and its modification time, as they were)."""
  with _locked(path):
    config = _read(path)
    before = text_format.MessageToString(config)
    entry = _entry(config, model_name, path, base_path)
    message = change(entry, *_labels(entry))
    after = text_format.MessageToString(config)
    if after != before:
      write_atomically(path, after)
  return Rollout(model_name, *_labels(entry), message)


def push(path: str, model_name: str, base_path: str, version: int) -> Rollout:
  """What the Pusher does with a pushed version: stable if the model has none, else canary
  unless one is live (then it is held)."""

  def change(entry, stable, canary):
    if entry.base_path != base_path:
      entry.base_path = base_path
    if stable is None:
      _set(entry, version, None)
      return f'version {version} is {STABLE} (the first one)'
    if version in (stable, canary):
      return f'version {version} is {STABLE if version == stable else CANARY} already'
    if canary is not None:
      return (f'version {version} held: version {canary} is still the {CANARY} (promote or '
              f'roll it back, then `python -m serving.rollout canary --version {version}`)')
    _set(entry, stable, version)
    return f'version {version} is the {CANARY} beside {STABLE} version {stable}'

  return _move(path, model_name, change, base_path)


def start_canary(path: str, model_name: str, version: int) -> Rollout:
  """Makes a version on disk the canary (one held by push, or an older one to compare)."""

  def change(entry, stable, canary):
    if canary is not None:
      raise RolloutError(f'{model_name}: version {canary} is the {CANARY} already: promote '
                         'or roll it back first')
    if stable is None:
      raise RolloutError(f'{model_name}: no {STABLE} version to compare a {CANARY} with')
    if version == stable:
      raise RolloutError(f'{model_name}: version {version} is the {STABLE} version')
    _set(entry, stable, version)
    return f'version {version} is the {CANARY} beside {STABLE} version {stable}'

  return _move(path, model_name, change)


def promote(path: str, model_name: str) -> Rollout:
  """stable := canary; the old stable version stops being served."""
  return _end_canary(path, model_name, 'promote', keep=True)


def rollback(path: str, model_name: str) -> Rollout:
  """Drops the canary; stable keeps serving."""
  return _end_canary(path, model_name, 'roll back', keep=False)


def _end_canary(path: str, model_name: str, action: str, keep: bool) -> Rollout:
  """The canary's trial ends: it becomes stable (keep), or is dropped."""

  def change(entry, stable, canary):
    if canary is None:
      raise RolloutError(f'{model_name}: no {CANARY} to {action} ({STABLE} is version {stable})')
    if keep:
      _set(entry, canary, None)
      return f'version {canary} is {STABLE} (was version {stable}, now unloaded)'
    _set(entry, stable, None)
    return f'{CANARY} version {canary} dropped; version {stable} stays {STABLE}'

  return _move(path, model_name, change)


def status(path: str) -> List[Rollout]:
  """Every model's labels in the file."""
  if not _exists(path):
    raise RolloutError(f'{path} does not exist: the Pusher writes it with the first push')
  return [Rollout(entry.name, *_labels(entry),
                  f'serves versions {sorted(entry.model_version_policy.specific.versions)} '
                  f'from {entry.base_path}')
          for entry in _read(path).model_config_list.config]


def labels_of(rollout: Rollout) -> Dict[str, int]:
  return {label: version for label, version in ((STABLE, rollout.stable),
                                                (CANARY, rollout.canary)) if version is not None}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m serving.rollout', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('action', choices=['status', 'promote', 'rollback', 'canary'])
  parser.add_argument('--config', required=True,
                      help=f'the {CONFIG_NAME} the servers read (--model_config_file)')
  parser.add_argument('--model-name', default=DEFAULT_MODEL_NAME)
  parser.add_argument('--version', type=int, help='canary: the version to try')
  args = parser.parse_args(argv)
  if args.action == 'canary' and args.version is None:
    parser.error('canary needs --version')
  try:
    if args.action == 'status':
      rollouts = status(args.config)
    elif args.action == 'canary':
      rollouts = [start_canary(args.config, args.model_name, args.version)]
    else:
      rollouts = [{'promote': promote, 'rollback': rollback}[args.action](args.config,
                                                                          args.model_name)]
  except (RolloutError, OSError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  for rollout in rollouts:
    print(f'{rollout.model_name}: {rollout.message}; labels {labels_of(rollout) or "none"}')
  if args.action != 'status':
    print(f'wrote {args.config} (servers polling it apply it within '
          '--model_config_file_poll_wait_seconds)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
