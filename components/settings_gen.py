"""SettingsGen: the model settings the training data calls for, as TFX hyperparameters.

Reads StatisticsGen's statistics of the train split (its ratings and distinct users and
movies: components/model/data_settings.py DataProfile), asks the model kind for its settings
(ModelKind.data_settings), drops those the user chose, and writes the rest where a TFX Tuner
would write its best hyperparameters: one KerasTuner HyperParameters config
(best_hyperparameters.txt) in a HyperParameters artifact, which the Trainer and the Refit read
as fn_args.hyperparameters. In MLMD the artifact carries the profile and each setting with its
reason as custom properties, so what picked a model's settings is in its lineage; the model
card shows them.
"""
import json
import os

from tfx import types
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

from components import features as f
from components.model import data_settings
from components.model.config import ModelConfig
from components.model.data_settings import HYPERPARAMETERS_FILE

# Custom properties of the artifact: the profile's figures, and the reasons as JSON.
PROFILE_PROPERTIES = ('ratings', 'users', 'movies')
REASONS_PROPERTY = 'reasons'
# The split whose statistics are the profile: what the gated model trains on.
PROFILE_SPLIT = 'train'


def profile_of(statistics: types.Artifact, split: str = PROFILE_SPLIT
               ) -> data_settings.DataProfile:
  """The split's ratings (examples) and distinct user and movie ids (TFDV's string
  statistics of the raw ids)."""
  view = stats_artifact_utils.load_statistics(statistics, split).get_default_slice()
  if view is None:
    raise ValueError(f'{statistics.uri}: no statistics of the {split} split')
  unique = {}
  for name in (f.USER_ID, f.MOVIE_ID):
    feature = view.get_feature([name])
    if feature is None or not feature.proto().HasField('string_stats'):
      raise ValueError(f'{statistics.uri}: the {split} split has no string statistics of '
                       f'{name!r}')
    unique[name] = feature.proto().string_stats.unique
  return data_settings.DataProfile(ratings=int(view.proto().num_examples),
                                   users=int(unique[f.USER_ID]), movies=int(unique[f.MOVIE_ID]))


def record(artifact: types.Artifact, profile: data_settings.DataProfile,
           settings: dict) -> None:
  """Writes the settings into artifact's folder (HYPERPARAMETERS_FILE) and, with the profile
  and reasons, into its MLMD custom properties."""
  with fileio.open(os.path.join(artifact.uri, HYPERPARAMETERS_FILE), 'w') as file:  # or gs://
    json.dump(data_settings.hyperparameters(settings), file, indent=1)
  for name in PROFILE_PROPERTIES:
    artifact.set_int_custom_property(name, getattr(profile, name))
  for name, setting in settings.items():
    value = setting.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      artifact.set_string_custom_property(name, str(value))
    elif isinstance(value, int):
      artifact.set_int_custom_property(name, value)
    else:
      artifact.set_float_custom_property(name, value)
  artifact.set_string_custom_property(
      REASONS_PROPERTY, json.dumps({name: setting.reason for name, setting in settings.items()}))


def read_values(folder: str) -> dict:
  """The settings record() wrote into a HyperParameters artifact's folder: name -> value."""
  with fileio.open(os.path.join(folder, HYPERPARAMETERS_FILE)) as file:
    return data_settings.values_of(json.load(file))


def profile_recorded(artifact: types.Artifact) -> data_settings.DataProfile:
  """The profile record() wrote into artifact's custom properties."""
  return data_settings.DataProfile(**{name: artifact.get_int_custom_property(name)
                                      for name in PROFILE_PROPERTIES})


def reasons(artifact: types.Artifact) -> dict:
  """Each recorded setting's reason (record's REASONS_PROPERTY)."""
  text = artifact.get_string_custom_property(REASONS_PROPERTY)
  return json.loads(text) if text else {}


@tfx.dsl.components.component
def SettingsGen(
    statistics: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleStatistics],
    hyperparameters: tfx.dsl.components.OutputArtifact[standard_artifacts.HyperParameters],
    model_config: tfx.dsl.components.Parameter[str],
) -> None:
  """The settings of the data's profile for model_config (ModelConfig.to_dict() as JSON),
  less those the user chose, into `hyperparameters`."""
  config = ModelConfig.from_dict(json.loads(model_config))
  profile = profile_of(statistics)
  settings = data_settings.derive(config, profile)
  record(hyperparameters, profile, settings)
