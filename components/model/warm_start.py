"""Warm start: a model starts from a previous model's weights, its id tables row by row by id.

Between runs the vocabularies grow (new users and movies) and reorder (TFT sorts them by
frequency), so an id's row moves: copying tables whole would give each id another's
embedding. Every id table is tagged with its vocabulary (`tag_id_table`); the previous model
leaves, beside its SavedModels, its weights and its vocabularies (`save`, in Format-WarmStart/),
and `restore` copies into a freshly built model:
- id tables: each id's row from the row the id had (ids new to the vocabulary keep their fresh
  initial rows; the rows that stand for no id: padding, out-of-vocabulary, are copied);
- every other weight of the same name and shape (dense layers, the history encoder);
- nothing else: a weight whose shape changed with the config starts fresh, and is counted.

Across runs only the weights move: the optimizer starts afresh, on the warm schedule
(ModelConfig.warm_start_epochs). The refit, which continues the gated model of its own run
(same vocabularies, same variables), also takes the optimizer's state (`save_optimizer`,
`restore_optimizer`): Adagrad's accumulated squared gradients, Adam's moments. A fresh Adagrad
takes steps of about the learning rate on every row it touches, the first epoch a jolt away
from the weights it continues.
"""
import io
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

STATE_DIR = 'Format-WarmStart'
_VOCABULARY_DIR = 'vocabularies'
SUMMARY_FILE = 'warm_start.json'  # what restore carried, beside the new model's state


def tag_id_table(layer: tf.keras.layers.Layer, vocabulary: str,
                 first_row: int = 0) -> tf.keras.layers.Layer:
  """Marks an embedding layer as indexed by a vocabulary: vocabulary index i is row
  first_row + i (rows before first_row and after the vocabulary stand for no id)."""
  layer.warm_start_vocabulary = vocabulary
  layer.warm_start_first_row = first_row
  return layer


def _id_tables(model: tf.keras.Model) -> Dict[int, tf.keras.layers.Layer]:
  """id(table variable) -> its layer, for the tagged layers of a built model."""
  tables = {}
  for layer in model.submodules:
    if getattr(layer, 'warm_start_vocabulary', None) and layer.weights:
      tables[id(layer.weights[0])] = layer
  return tables


def _keys(model: tf.keras.Model) -> List[str]:
  """Each weight's path of attributes from the model (query_tower/encoder/gru/cell/kernel), as
  TF checkpoints name it: two builds of one config agree on it, whatever names Keras made
  unique (the second model built in a process is recommender_model_1, its layers dense_7)."""
  weights = {id(variable) for variable in model.weights}
  paths: Dict[int, str] = {}

  def walk(node, prefix: str, seen: set) -> None:
    for name, child in node._trackable_children('checkpoint').items():  # pylint: disable=protected-access
      if id(child) in seen or name == 'optimizer':  # its slots are not weights to carry
        continue
      seen.add(id(child))
      if isinstance(child, tf.Variable):
        if id(child) in weights:
          paths.setdefault(id(child), prefix + name)
      else:
        walk(child, prefix + name + '/', seen)

  walk(model, '', set())
  return [paths.get(id(variable), variable.name) for variable in model.weights]


def save(members: Sequence[tf.keras.Model], vocabularies: Dict[str, List[bytes]],
         model_dir: str) -> str:
  """Writes each trained member's weights and the vocabularies they index into
  model_dir/Format-WarmStart/; returns that folder."""
  state_dir = os.path.join(model_dir, STATE_DIR)
  tf.io.gfile.makedirs(os.path.join(state_dir, _VOCABULARY_DIR))
  used = set()
  for index, member in enumerate(members):
    tables = _id_tables(member)
    weights, entries = {}, []
    for position, (variable, key) in enumerate(zip(member.weights, _keys(member))):
      layer = tables.get(id(variable))
      entries.append({'key': key, 'shape': list(variable.shape),
                      'vocabulary': layer.warm_start_vocabulary if layer else None,
                      'first_row': layer.warm_start_first_row if layer else 0})
      weights[f'w{position}'] = variable.numpy()
      if layer:
        used.add(layer.warm_start_vocabulary)
    buffer = io.BytesIO()  # np.savez seeks in its file: write it whole (gs:// too)
    np.savez(buffer, **weights)
    with tf.io.gfile.GFile(os.path.join(state_dir, f'member-{index}.npz'), 'wb') as file:
      file.write(buffer.getvalue())
    with tf.io.gfile.GFile(os.path.join(state_dir, f'member-{index}.json'), 'w') as file:
      json.dump(entries, file)
  for name in sorted(used):
    with tf.io.gfile.GFile(os.path.join(state_dir, _VOCABULARY_DIR, name), 'wb') as file:
      file.write(b'\n'.join(vocabularies[name]))
  return state_dir


def has_state(model_dir: Optional[str]) -> bool:
  return bool(model_dir) and tf.io.gfile.exists(os.path.join(model_dir, STATE_DIR,
                                                             'member-0.json'))


def _read_vocabulary(state_dir: str, name: str) -> List[bytes]:
  with tf.io.gfile.GFile(os.path.join(state_dir, _VOCABULARY_DIR, name), 'rb') as file:
    text = file.read()
  return text.split(b'\n') if text else []


def carry_rows(old_table: np.ndarray, old_ids: Sequence[bytes], new_table: np.ndarray,
               new_ids: Sequence[bytes], first_row: int) -> np.ndarray:
  """new_table with each id's row taken from old_table where the id had one.

  Tables are [first_row + len(ids) + out-of-vocabulary rows, dim]; rows outside the ids (the
  padding before, the out-of-vocabulary rows after) are copied as they are when both tables
  have them. Returns a new array."""
  table = new_table.copy()
  old_position = {movie: position for position, movie in enumerate(old_ids)}
  new_rows, old_rows = [], []
  for position, value in enumerate(new_ids):
    if value in old_position:
      new_rows.append(first_row + position)
      old_rows.append(first_row + old_position[value])
  table[new_rows] = old_table[old_rows]
  table[:first_row] = old_table[:first_row]
  extra = min(len(old_table) - first_row - len(old_ids), len(table) - first_row - len(new_ids))
  if extra > 0:
    table[len(table) - extra:] = old_table[len(old_table) - extra:]
  return table


def restore(member: tf.keras.Model, index: int, model_dir: str,
            vocabularies: Dict[str, List[bytes]]) -> dict:
  """Copies the previous model's member `index` (member 0 if it had fewer) into a built
  member; returns what it carried: {'carried_ids': {vocabulary: n}, 'new_ids': {...},
  'copied': n weights, 'fresh': [keys of weights that start fresh]}."""
  state_dir = os.path.join(model_dir, STATE_DIR)
  if not tf.io.gfile.exists(os.path.join(state_dir, f'member-{index}.json')):
    index = 0
  with tf.io.gfile.GFile(os.path.join(state_dir, f'member-{index}.json')) as file:
    entries = {entry['key']: (position, entry) for position, entry in enumerate(json.load(file))}
  with tf.io.gfile.GFile(os.path.join(state_dir, f'member-{index}.npz'), 'rb') as file:
    weights = dict(np.load(io.BytesIO(file.read())))
  tables = _id_tables(member)
  summary = {'from': model_dir, 'carried_ids': {}, 'new_ids': {}, 'copied': 0, 'fresh': []}
  old_vocabularies = {}
  for variable, key in zip(member.weights, _keys(member)):
    position, entry = entries.get(key, (None, None))
    layer = tables.get(id(variable))
    old = weights[f'w{position}'] if entry else None
    if layer is not None and entry and entry['vocabulary'] == layer.warm_start_vocabulary:
      name = layer.warm_start_vocabulary
      if name not in old_vocabularies:
        old_vocabularies[name] = _read_vocabulary(state_dir, name)
      if old.shape[1:] == tuple(variable.shape[1:]):
        variable.assign(carry_rows(old, old_vocabularies[name], variable.numpy(),
                                   vocabularies[name], layer.warm_start_first_row))
        carried = len(set(old_vocabularies[name]) & set(vocabularies[name]))
        summary['carried_ids'][name] = carried
        summary['new_ids'][name] = len(vocabularies[name]) - carried
        summary['copied'] += 1
        continue
    elif layer is None and entry and tuple(entry['shape']) == tuple(variable.shape):
      variable.assign(old)
      summary['copied'] += 1
      continue
    summary['fresh'].append(key)
  return summary


def _optimizer_file(state_dir: str, index: int) -> str:
  return os.path.join(state_dir, f'member-{index}-optimizer.npz')


def _carries_state(optimizer) -> bool:
  """Whether an optimizer's state can be saved and restored here: Keras' optimizers, whose
  variables are the step count and then the slots in the order of the variables they were
  built over; not the legacy ones (multitask's CompositeOptimizer), which keep slots by name."""
  return (optimizer is not None and hasattr(optimizer, 'variables')
          and not callable(getattr(optimizer, 'get_slot_names', None)))


def save_optimizer(members: Sequence[tf.keras.Model], model_dir: str) -> None:
  """Writes each member's optimizer variables (its step count, then its slots in the order of
  the member's trainable variables) beside its weights, for a refit that continues them."""
  state_dir = os.path.join(model_dir, STATE_DIR)
  for index, member in enumerate(members):
    optimizer = getattr(member, 'optimizer', None)
    if not _carries_state(optimizer):
      continue
    buffer = io.BytesIO()
    np.savez(buffer, *[variable.numpy() for variable in optimizer.variables])
    with tf.io.gfile.GFile(_optimizer_file(state_dir, index), 'wb') as file:
      file.write(buffer.getvalue())


def restore_optimizer(member: tf.keras.Model, index: int, model_dir: str) -> bool:
  """Builds the member's optimizer over its trainable variables and loads the optimizer state
  save_optimizer wrote for member `index` of the model in model_dir; False (nothing loaded)
  when there is none or its shapes differ (another config, other vocabularies)."""
  path = _optimizer_file(os.path.join(model_dir, STATE_DIR), index)
  optimizer = member.optimizer
  if not tf.io.gfile.exists(path) or not _carries_state(optimizer):
    return False
  with tf.io.gfile.GFile(path, 'rb') as file:
    saved = np.load(io.BytesIO(file.read()))
    values = [saved[f'arr_{position}'] for position in range(len(saved.files))]
  optimizer.build(member.trainable_variables)
  variables = optimizer.variables
  if [tuple(v.shape) for v in variables] != [value.shape for value in values]:
    return False
  for variable, value in zip(variables, values):
    variable.assign(value)
  return True
