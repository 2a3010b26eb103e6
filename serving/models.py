"""Model versions: watching base paths, loading and unloading versions, running signatures.

Mirrors what TF Serving's model manager does for SavedModel folders laid out as
<base_path>/<version>/saved_model.pb (the layout our Pusher writes):
- A version is a folder whose name is a number and that holds saved_model.pb. It is loaded
  once complete: saved_model.pb present (TFX's Pusher writes it last) and its files unchanged
  since the previous poll.
- The version policy (latest N, all, specific) picks the versions to serve among the loadable
  ones. A version that fails to load is reported (END with its error) and skipped until its
  files change, so the previous version keeps serving.
- New versions are loaded before old ones are unloaded; a request holds the version it started
  on, so a swap never fails a request.
- Requests name models and versions; both are looked up among loaded versions only, never
  joined into a path.
"""
import dataclasses
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

import scann  # noqa: F401  (registers the ScaNN ops that serving signatures use)
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.util import deprecation

from serving import errors, monitoring, saved_model
from serving.batching import Batcher
from serving.config_files import BatchingParameters, ModelSource

DEFAULT_SIGNATURE = 'serving_default'
Arrays = Dict[str, np.ndarray]

# Model version states, as in tensorflow.serving.ModelVersionStatus.State.
START, LOADING, AVAILABLE, UNLOADING, END = 'START', 'LOADING', 'AVAILABLE', 'UNLOADING', 'END'


@dataclasses.dataclass
class VersionStatus:
  version: int
  state: str
  error_code: grpc.StatusCode = grpc.StatusCode.OK
  error_message: str = ''


def dtype_name(dtype_enum: int) -> str:
  """'string', 'int64', ... as TF Serving's messages spell dtypes."""
  return tf.dtypes.as_dtype(dtype_enum).name if dtype_enum else 'invalid'


# Callables kept per loaded version, one per (inputs, outputs) pair requests asked for: every
# signature with all its outputs, plus the output_filter subsets clients send.
MAX_CALLABLES = 256


class LoadedVersion:
  """One loaded version: runs its signatures on numpy inputs as TF Serving does.

  TF Serving loads a SavedModel with the C++ loader (tag serve, its init op run) into a
  Session, and runs a signature with Session::Run on the SignatureDef's tensor names. So does
  this class, through the TF1 loader and Session::MakeCallable, so that a model behaves here as
  it will there: inputs are checked for their names and dtypes only, and a shape the
  SignatureDef does not declare (a [3] tensor for a [-1,1] input) is fed to the graph, which
  answers or fails as it would in TF Serving. It is also faster than calling the TF2 concrete
  functions of tf.saved_model.load (docs/benchmarks.md, "Serving").
  """

  def __init__(self, name: str, version: int, path: str,
               batching: Optional[BatchingParameters] = None):
    self.name, self.version, self.path = name, version, path
    graph = tf.Graph()
    self._session = tf.compat.v1.Session(graph=graph)
    # The TF1 loader warns that it is deprecated in favour of tf.saved_model.load, which runs
    # signatures differently from TF Serving (the class docstring): the warning is not for us.
    with graph.as_default(), deprecation.silence():
      self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ['serve'], path)
    self._callables: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], Callable] = {}
    self._callables_lock = threading.Lock()
    for name, signature_def in self.signature_defs.items():
      if not name.startswith('__'):  # (__saved_model_init_op: run by the loader)
        # Made now, so the first request does not pay for it (an output_filter's later). One
        # that cannot be made fails its requests, not the version's load, as in TF Serving.
        try:
          self._callable(tuple(sorted(info.name for info in signature_def.inputs.values())),
                         tuple(signature_def.outputs[alias].name
                               for alias in sorted(signature_def.outputs)))
        except errors.ServingError:
          pass
    self._batchers: Dict[str, Batcher] = {}
    if batching:
      for signature_name in self.signature_defs:
        self._batchers[signature_name] = Batcher(
            lambda inputs, name=signature_name: self.run(name, inputs), batching)

  @property
  def signature_defs(self):
    return self.meta_graph.signature_def

  def close(self) -> None:
    """Stops the batch threads. The session is left to the garbage collector: requests that
    still hold this version (a swap mid-request) finish on it."""
    for batcher in self._batchers.values():
      batcher.close()

  def signature(self, signature_name: str):
    """(name, SignatureDef); FAILED_PRECONDITION for an unknown name, as TF Serving's Predict."""
    name = signature_name or DEFAULT_SIGNATURE
    if name not in self.signature_defs:
      raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                f'Serving signature key "{name}" not found.')
    return name, self.signature_defs[name]

  def check_inputs(self, signature_name: str, inputs: Arrays) -> None:
    """TF Serving's checks: the signature's input names, then each input's dtype (which
    Session::Run checks); shapes are the graph's business."""
    name, signature_def = self.signature(signature_name)
    expected, sent = set(signature_def.inputs), set(inputs)
    if expected != sent:
      raise errors.invalid_argument(
          f'input size does not match signature: {len(sent)}!={len(expected)} '
          f'len({{{",".join(sorted(sent))}}}) != len({{{",".join(sorted(expected))}}}). '
          f'Sent extra: {{{",".join(sorted(sent - expected))}}}. '
          f'Missing but required: {{{",".join(sorted(expected - sent))}}}.')
    for position, input_name in enumerate(sorted(expected)):
      tensor_info, array = signature_def.inputs[input_name], inputs[input_name]
      want = tf.dtypes.as_dtype(tensor_info.dtype)
      got = tf.dtypes.as_dtype(array.dtype) if array.dtype != object else tf.string
      if want != got:
        raise errors.invalid_argument(
            f'Expects arg[{position}] ({input_name}) to be {want.name} but {got.name} is '
            'provided')

  def predict(self, signature_name: str, inputs: Arrays,
              output_filter: Sequence[str] = ()) -> Tuple[str, Arrays]:
    """Runs a signature; returns (signature name, outputs as numpy arrays)."""
    name, signature_def = self.signature(signature_name)
    self.check_inputs(name, inputs)
    seen = set()
    for alias in output_filter:
      if alias not in signature_def.outputs:
        raise errors.invalid_argument(
            f'output tensor alias not found in signature: {alias} Outputs expected to be in '
            f'the set {{{",".join(sorted(signature_def.outputs))}}}.')
      if alias in seen:
        raise errors.invalid_argument(f'duplicate output tensor alias: {alias}')
      seen.add(alias)
    batcher = self._batchers.get(name)
    if batcher is None:
      return name, self.run(name, inputs, output_filter)
    outputs = batcher(inputs)
    return name, {alias: outputs[alias] for alias in output_filter} if output_filter else outputs

  def run(self, signature_name: str, inputs: Arrays, outputs: Sequence[str] = ()) -> Arrays:
    """Session::Run of a signature: feeds its input tensors, fetches the named outputs (all of
    them by default); {alias: array}. Checks nothing itself: see check_inputs."""
    signature_def = self.signature_defs[signature_name]
    aliases = tuple(outputs) or tuple(sorted(signature_def.outputs))
    fetched = self.run_tensors(
        {signature_def.inputs[alias].name: array for alias, array in inputs.items()},
        [signature_def.outputs[alias].name for alias in aliases])
    return dict(zip(aliases, fetched))

  def run_tensors(self, feeds: Dict[str, np.ndarray], fetches: Sequence[str]) -> List[np.ndarray]:
    """Session::Run by tensor names: feeds {tensor name: array}, fetches [tensor name]."""
    feed_names = tuple(sorted(feeds))
    call = self._callable(feed_names, tuple(fetches))
    try:
      return call(*[feeds[name] for name in feed_names])
    except tf.errors.OpError as error:
      raise errors.from_tensorflow(error) from None
    except (TypeError, ValueError) as error:  # an array TensorFlow cannot convert
      raise errors.invalid_argument(str(error)) from None

  def _callable(self, feeds: Tuple[str, ...], fetches: Tuple[str, ...]) -> Callable:
    """Session::MakeCallable, kept per (feeds, fetches). Session.make_callable would run each
    feed through Session.run's Python checks (shapes among them), which TF Serving does not."""
    key = feeds, fetches
    with self._callables_lock:
      call = self._callables.get(key)
      if call is None:
        options = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
        try:
          call = self._session._make_callable_from_options(options)  # noqa: SLF001
        except tf.errors.OpError as error:
          raise errors.from_tensorflow(error) from None
        if len(self._callables) >= MAX_CALLABLES:
          self._callables.pop(next(iter(self._callables)))
        self._callables[key] = call
      return call


def _fingerprint(version_dir: str) -> Tuple:
  """(path, size, mtime) of every file below a folder: equal twice means nothing is writing."""
  files = []
  for root, _, names in tf.io.gfile.walk(version_dir):
    for file_name in names:
      path = os.path.join(root, file_name)
      try:
        stat = tf.io.gfile.stat(path)
      except tf.errors.NotFoundError:
        continue
      files.append((os.path.relpath(path, version_dir), stat.length, stat.mtime_nsec))
  return tuple(sorted(files))


class ServedModel:
  """The versions of one model: what is on disk, what is loaded, and each version's status."""

  def __init__(self, source: ModelSource, batching: Optional[BatchingParameters] = None,
               log: Callable[[str], None] = print,
               metrics: Optional[monitoring.Metrics] = None):
    self.source = source
    self._batching = batching
    self._log = log
    self._metrics = metrics or monitoring.Metrics()  # counts each version load
    self._loaded: Dict[int, LoadedVersion] = {}
    self._status: Dict[int, VersionStatus] = {}
    self._previous_fingerprints: Dict[int, Tuple] = {}
    self._failed_fingerprints: Dict[int, Tuple] = {}
    self._lock = threading.Lock()

  @property
  def name(self) -> str:
    return self.source.name

  def _loadable_versions(self) -> Dict[int, str]:
    """Version folders that can be served: loaded already, or complete and not failed.

    Complete: holds saved_model.pb and its files did not change since the last poll.
    """
    fingerprints, loadable = {}, {}
    for version, path in saved_model.versions(self.source.base_path).items():
      if version in self._loaded:
        loadable[version] = path
        continue
      fingerprint = _fingerprint(path)
      fingerprints[version] = fingerprint
      if self._failed_fingerprints.get(version) not in (None, fingerprint):
        del self._failed_fingerprints[version]  # its files changed: worth another try
      if (self._previous_fingerprints.get(version) == fingerprint
          and version not in self._failed_fingerprints):
        loadable[version] = path
    self._previous_fingerprints = fingerprints
    return loadable

  def _aspired(self, loadable: Sequence[int]) -> List[int]:
    if self.source.version_policy == 'all':
      return sorted(loadable)
    if self.source.version_policy == 'specific':
      return sorted(set(loadable) & set(self.source.versions))
    return sorted(loadable)[-self.source.num_latest:]

  def poll(self) -> None:
    """One look at the base path: load aspired versions, then unload the ones they replace."""
    loadable = self._loadable_versions()
    aspired = self._aspired(list(loadable))
    for version in aspired:
      if version not in self._loaded:
        self._load(version, loadable[version])
    # Unload only once a replacement is live (or nothing is left to serve on disk).
    if any(version in self._loaded for version in aspired) or not aspired:
      for version in list(self._loaded):
        if version not in aspired:
          self._unload(version)

  def _load(self, version: int, path: str) -> None:
    self._status[version] = VersionStatus(version, LOADING)
    started = time.monotonic()
    try:
      loaded = LoadedVersion(self.name, version, path, self._batching)
    except Exception as error:  # noqa: BLE001  (any failure: report it, keep the old version)
      self._metrics.record_load(path, False, time.monotonic() - started)
      self._failed_fingerprints[version] = self._previous_fingerprints.get(version, ())
      message = f'Failed to load {self.name} version {version} from {path}: ' + \
          str(error).strip().splitlines()[0][:500]
      self._status[version] = VersionStatus(version, END, grpc.StatusCode.UNKNOWN, message)
      self._log(message)
      return
    self._metrics.record_load(path, True, time.monotonic() - started)
    with self._lock:
      self._loaded[version] = loaded
    self._status[version] = VersionStatus(version, AVAILABLE)
    self._log(f'Loaded {self.name} version {version} from {path} '
              f'in {time.monotonic() - started:.1f} s')

  def _unload(self, version: int) -> None:
    self._status[version] = VersionStatus(version, UNLOADING)
    with self._lock:
      loaded = self._loaded.pop(version)
    loaded.close()
    self._status[version] = VersionStatus(version, END)
    self._log(f'Unloaded {self.name} version {version}')

  def available_versions(self) -> set:
    """The versions loaded now (AVAILABLE)."""
    with self._lock:
      return set(self._loaded)

  def get(self, version: Optional[int] = None) -> LoadedVersion:
    """The requested version, or the highest loaded one; NOT_FOUND as TF Serving words it."""
    with self._lock:
      if version is None:
        if self._loaded:
          return self._loaded[max(self._loaded)]
        raise errors.not_found(f'Servable not found for request: Latest({self.name})')
      if version in self._loaded:
        return self._loaded[version]
    raise errors.not_found(f'Servable not found for request: Specific({self.name}, {version})')

  def status(self, version: Optional[int] = None) -> List[VersionStatus]:
    statuses = dict(self._status)  # a copy: the watcher thread updates it
    if version is not None:
      if version not in statuses:
        raise errors.not_found(f'Could not find version {version} of model {self.name}')
      return [statuses[version]]
    if not statuses:
      raise errors.not_found(f'Could not find any versions of model {self.name}')
    return [statuses[v] for v in sorted(statuses, reverse=True)]

  def close(self) -> None:
    for version in list(self._loaded):
      self._unload(version)


class _Watcher:
  """Calls look() every poll_seconds on a daemon thread, from start() until stop(); a look that
  raises is logged and the watching goes on."""
  poll_seconds: float
  _log: Callable[[str], None]

  def _start_watching(self, name: str) -> None:
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._watch, daemon=True, name=name)
    self._thread.start()

  def look(self) -> None:
    raise NotImplementedError

  def _watch(self) -> None:
    while not self._stop.wait(self.poll_seconds):
      try:
        self.look()
      except Exception as error:  # noqa: BLE001  (a bad look must not stop the watching)
        self._log(f'{self._thread.name}: {error}')

  def _stop_watching(self) -> None:
    if getattr(self, '_thread', None):
      self._stop.set()
      self._thread.join()


class LabelError(ValueError):
  """A version label names a version it may not (TF Serving: FAILED_PRECONDITION)."""


# What a request names: None (the latest loaded version), a version number, or a version label.
VersionChoice = Union[None, int, str]


class ModelManager(_Watcher):
  """All served models, polled every poll_seconds by a background thread, and their labels.

  configure() is TF Serving's ReloadConfig: the version labels are checked against what is
  loaded at that moment, then models are added, updated (version policy, labels) or removed.
  A label may only name a version that is AVAILABLE, as in TF Serving, except with
  allow_unavailable_labels (--allow_version_labels_for_unavailable_models): then a label that
  is new, or keeps its version, may name a version still to load (requests on it answer
  NOT_FOUND until it loads). A config that fails these checks changes nothing.
  """

  def __init__(self, sources: Sequence[ModelSource], batching: Optional[BatchingParameters] = None,
               poll_seconds: float = 1.0, log: Callable[[str], None] = print,
               allow_unavailable_labels: bool = False,
               metrics: Optional[monitoring.Metrics] = None):
    self.models: Dict[str, ServedModel] = {}
    self.metrics = metrics or monitoring.Metrics()
    self._labels: Dict[str, Dict[str, int]] = {}
    self._batching, self._log = batching, log
    self.allow_unavailable_labels = allow_unavailable_labels
    self.poll_seconds = poll_seconds
    self._configure_lock = threading.Lock()
    self.configure(sources)

  def configure(self, sources: Sequence[ModelSource]) -> None:
    """Serves exactly these models from now on; ValueError (and no change) on a label that
    names a version it may not. Removed models are unloaded; requests already running on one
    of their versions finish on it."""
    with self._configure_lock:
      labels = {source.name: self._checked_labels(source) for source in sources}
      models = {}
      for source in sources:
        current = self.models.get(source.name)
        if current is not None and current.source.base_path == source.base_path:
          current.source = source  # the next poll applies a new version policy
          models[source.name] = current
        else:
          models[source.name] = ServedModel(source, self._batching, self._log, self.metrics)
      # Two reference swaps: a request sees the old or the new mapping, never a mix.
      removed = [model for name, model in self.models.items() if models.get(name) is not model]
      self.models, self._labels = models, labels
      for model in removed:
        model.close()

  def _checked_labels(self, source: ModelSource) -> Dict[str, int]:
    current_model = self.models.get(source.name)
    available = set()
    if current_model is not None and current_model.source.base_path == source.base_path:
      available = current_model.available_versions()
    current = self._labels.get(source.name, {})
    for label, version in source.version_labels.items():
      if version in available:
        continue
      if self.allow_unavailable_labels and current.get(label, version) == version:
        continue
      hint = ('' if self.allow_unavailable_labels else
              ' (--allow_version_labels_for_unavailable_models lets a new label name a version '
              'before it loads)')
      raise LabelError(f'Request to assign label to version {version} of model {source.name}, '
                       f'which is not currently available for inference{hint}')
    return dict(source.version_labels)

  def labels(self, name: str) -> Dict[str, int]:
    """A model's version labels now."""
    return dict(self._labels.get(name, {}))

  def model(self, name: str) -> ServedModel:
    models = self.models
    if name not in models:
      raise errors.not_found(f'Could not find any versions of model {name}')
    return models[name]

  def version_of(self, name: str, version: VersionChoice) -> Optional[int]:
    """The version number a request means (a label looked up); None for the latest."""
    if not isinstance(version, str):
      return version
    labels = self._labels.get(name, {})
    if version not in labels:
      raise errors.invalid_argument(f'Unrecognized servable version label: {version}')
    return labels[version]

  def get(self, name: str, version: VersionChoice = None) -> LoadedVersion:
    number = self.version_of(name, version)
    models = self.models
    if name not in models:
      raise errors.not_found(f'Servable not found for request: '
                             f'{"Latest" if number is None else "Specific"}({name}'
                             f'{"" if number is None else f", {number}"})')
    try:
      return models[name].get(number)
    except errors.ServingError:
      # The label moved on and its old version was unloaded between the two lookups (a
      # promote): the label's version now serves the request.
      if isinstance(version, str) and self.version_of(name, version) != number:
        return self.get(name, version)
      raise

  def poll(self) -> None:
    for model in list(self.models.values()):
      model.poll()

  look = poll

  def start(self, settle_seconds: float = 0.5) -> None:
    """Loads what is on disk now (two looks, settle_seconds apart), then keeps watching."""
    self.poll()
    time.sleep(settle_seconds)
    self.poll()
    self._start_watching('model-watcher')

  def stop(self) -> None:
    self._stop_watching()
    for model in self.models.values():
      model.close()


class ConfigFileWatcher(_Watcher):
  """Re-reads a models.config every poll_seconds (--model_config_file_poll_wait_seconds) and
  applies it when its text changed. A file that does not parse, or that the manager refuses,
  keeps the last good config serving: the error is logged once per text, and the file is tried
  again at every poll (a half-written file, or a label waiting for its version, can come right).
  """

  def __init__(self, path: str, manager: ModelManager, poll_seconds: float,
               parse: Callable[[str, str], Sequence[ModelSource]],
               log: Callable[[str], None] = print):
    self.path, self.manager, self.poll_seconds = path, manager, poll_seconds
    self._parse, self._log = parse, log
    self._applied: Optional[str] = None
    self._failed: Optional[str] = None

  def look(self) -> bool:
    """One look at the file; True if it applied a new config."""
    try:
      with tf.io.gfile.GFile(self.path) as file:
        text = file.read()
    except (tf.errors.OpError, OSError) as error:
      return self._failure(f'cannot read it: {error}', key=f'unreadable: {error}')
    if text == self._applied:
      return False
    try:
      self.manager.configure(self._parse(text, self.path))
    except ValueError as error:
      return self._failure(str(error), key=text)
    self._applied, self._failed = text, None
    self._log(f'Applied {self.path}: ' + '; '.join(
        f'{name} (labels {self.manager.labels(name) or "none"})' for name in self.manager.models))
    return True

  def _failure(self, message: str, key: str) -> bool:
    if key != self._failed:
      self._log(f'{self.path}: not applied, the previous config keeps serving: {message}')
      self._failed = key
    return False

  def start(self, applied_text: Optional[str] = None) -> None:
    """Watches from now on; applied_text: the text the manager was configured with."""
    self._applied = applied_text
    self._start_watching('config-watcher')

  def stop(self) -> None:
    self._stop_watching()
