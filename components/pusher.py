"""The Pusher's executor: TFX's filesystem push, minus the duplicate of what is already served.

An unchanged re-run reuses the cached Trainer output, and the Evaluator blesses that same model
again (now against itself as the baseline). TFX's Pusher would copy it into a new version
folder, and every TF Serving instance watching the model base path would load a byte-identical
model. This executor first compares the blessed model with the latest version under the push
destination; if they are the same SavedModel it records that version as the push (the
PushedModel artifact's `pushed_destination` / `pushed_version`) and copies nothing.

"The same SavedModel" means the same `fingerprint.pb`: TensorFlow writes it beside every
saved_model.pb with hashes of the graph, the signatures and the variables' checkpoint, so two
exports with different weights never match, and a copy of an export always matches its source.
Only the latest version is compared: pushing an older model again (a rollback) still makes it
the newest version, which is what TF Serving serves.

Then it records the version in the canary rollout's models.config beside the model folders
(<serving models>/models.config, serving/rollout.py): the first version becomes `stable`, a
later one the `canary` beside it (held while another canary is live). Servers started with
`--model_config_file` serve those labels; servers on `--model_base_path` serve the newest
version, as before. A run that fails before this step leaves the labels as they were; the file
is replaced atomically.
"""
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from serving import rollout

FINGERPRINT = 'fingerprint.pb'


def latest_version_dir(base_directory: str) -> Optional[str]:
  """The newest complete version folder under a model base path (local or gs://), or None.

  TF Serving's rule: folders named by a number that hold saved_model.pb (written last).
  """
  if not fileio.isdir(base_directory):
    return None
  numbered = [entry.rstrip('/') for entry in fileio.listdir(base_directory)]
  versions = sorted((int(entry) for entry in numbered if entry.isdigit()), reverse=True)
  for version in versions:
    path = os.path.join(base_directory, str(version))
    if fileio.exists(os.path.join(path, 'saved_model.pb')):
      return path
  return None


def same_saved_model(model_dir: str, other_dir: str) -> bool:
  """Whether two SavedModel folders hold the same model (equal, present fingerprint.pb)."""
  fingerprints = [os.path.join(folder, FINGERPRINT) for folder in (model_dir, other_dir)]
  if not all(fileio.exists(path) for path in fingerprints):
    return False
  first, second = (_read(path) for path in fingerprints)
  return first == second


def _read(path: str) -> bytes:
  with fileio.open(path, 'rb') as file:
    return file.read()


class Executor(pusher_executor.Executor):
  """TFX's Pusher, except that a model already served as the latest version is not copied."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    served = self._serving_the_same_model(input_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if served is None:
      super().Do(input_dict, output_dict, exec_properties)
    else:
      logging.info('Already serving this model as version %s (%s): nothing pushed',
                   os.path.basename(served), served)
      self._MarkPushed(model_push, pushed_destination=served,
                       pushed_version=os.path.basename(served))
      model_push.set_int_custom_property('already_served', 1)
    if model_push.get_int_custom_property('pushed'):
      self._roll_out(model_push, exec_properties)

  @staticmethod
  def _roll_out(model_push: types.Artifact, exec_properties: Dict[str, Any]) -> None:
    """Labels the pushed version in <serving models>/models.config (serving/rollout.py)."""
    destination = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
        pusher_pb2.PushDestination())
    if destination.WhichOneof('destination') != 'filesystem':
      return
    base_path = destination.filesystem.base_directory.rstrip('/')
    config_path = os.path.join(os.path.dirname(base_path), rollout.CONFIG_NAME)
    version = int(model_push.get_string_custom_property('pushed_version'))
    result = rollout.push(config_path, os.path.basename(base_path), base_path, version)
    logging.info('%s: %s', config_path, result.message)
    model_push.set_string_custom_property('rollout', result.message)
    model_push.set_string_custom_property('models_config', config_path)

  def _serving_the_same_model(self, input_dict: Dict[str, List[types.Artifact]],
                              exec_properties: Dict[str, Any]) -> Optional[str]:
    """The latest version folder if it holds the blessed model; None if a push is needed (or
    the model is not blessed: TFX's Pusher then records that nothing was pushed)."""
    if not self.CheckBlessing(input_dict):
      return None
    destination = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
        pusher_pb2.PushDestination())
    if destination.WhichOneof('destination') != 'filesystem':
      return None
    latest = latest_version_dir(destination.filesystem.base_directory)
    if latest and same_saved_model(self.GetModelPath(input_dict), latest):
      return latest
    return None
