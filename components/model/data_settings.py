"""Settings chosen for the data: what the training split's size says the model should be.

The settings that win on MovieLens 100K lose on MovieLens 1M and the other way round
(docs/benchmarks.md, "Settings chosen for the data"): with about 40 ratings a movie the
sequential model needs a GRU over 20 movies and strong regularisation, with about 100 or more
self-attention over 200 movies, Adam, and none. So the pipeline measures the data
(`DataProfile`, from StatisticsGen's statistics of the train split) and each model kind turns
it into settings (`ModelKind.data_settings` in kinds.py), each with the reason it was chosen.
components/settings_gen.py's SettingsGen component records them in MLMD and hands them to the
Trainer and the Refit as TFX's `hyperparameters` (KerasTuner's format, so a TFX Tuner could
take its place); the model card shows them.

A derived setting never replaces one the user chose: a field named in ModelConfig.fixed (the
CLI puts every model flag given there) or one already changed from the kind's tuned value.

Free of TensorFlow: the CLI and config.py import it.
"""
import dataclasses
from typing import Any, Dict, Mapping

# The file a HyperParameters artifact holds (TFX's Tuner's name; its Trainer reads the only
# file in the folder).
HYPERPARAMETERS_FILE = 'best_hyperparameters.txt'
# KerasTuner's HyperParameters.get_config() layout (what TFX's Tuner writes and its Trainer
# reads as fn_args.hyperparameters): {'space': [...], 'values': {name: value}}.
_SPACE, _VALUES = 'space', 'values'


@dataclasses.dataclass(frozen=True)
class DataProfile:
  """The training split's size. ratings: its ratings; users, movies: the distinct ids in it."""
  ratings: int
  users: int
  movies: int

  @property
  def ratings_per_movie(self) -> float:
    return self.ratings / max(self.movies, 1)

  @property
  def ratings_per_user(self) -> float:
    return self.ratings / max(self.users, 1)

  def describe(self) -> str:
    return (f'{self.ratings:,} training ratings, {self.users:,} users, {self.movies:,} movies '
            f'({self.ratings_per_movie:.0f} ratings a movie, {self.ratings_per_user:.0f} a '
            'user)')


@dataclasses.dataclass(frozen=True)
class Setting:
  """A derived value of one ModelConfig field, and why (a sentence for the card and the CLI)."""
  value: Any
  reason: str


def open_to_data(config, name: str) -> bool:
  """Whether the data may set field `name` of config (a ModelConfig): the user did not name it
  (config.fixed) and it still holds its kind's tuned value (or the dataclass default)."""
  if name in config.fixed:
    return False
  tuned = type(config).tuned(config.kind)
  return getattr(config, name) == getattr(tuned, name)


def derive(config, profile: DataProfile) -> Dict[str, Setting]:
  """The kind's settings for this data (ModelKind.data_settings), less those the user chose.
  config: a ModelConfig."""
  chosen = config.model_kind.data_settings(profile, config)
  return {name: setting for name, setting in chosen.items() if open_to_data(config, name)}


def hyperparameters(settings: Mapping[str, Setting]) -> Dict[str, Any]:
  """settings as KerasTuner's HyperParameters config: each a Fixed hyperparameter."""
  return {
      _SPACE: [{'class_name': 'Fixed', 'config': {'name': name, 'value': setting.value,
                                                  'conditions': []}}
               for name, setting in settings.items()],
      _VALUES: {name: setting.value for name, setting in settings.items()}}


def values_of(hyperparameters_config: Mapping[str, Any]) -> Dict[str, Any]:
  """The values of a HyperParameters config (hyperparameters()'s, or a TFX Tuner's)."""
  return dict(hyperparameters_config.get(_VALUES, {}))


def apply(config, values: Mapping[str, Any]):
  """config (a ModelConfig) with the values (values_of a HyperParameters config), except
  fields the user chose (ModelConfig.fixed): SettingsGen leaves those out, and a Tuner's search
  space might not."""
  values = {name: value for name, value in values.items() if name not in config.fixed}
  if not values:
    return config
  return type(config).from_dict({**config.to_dict(), **values})
