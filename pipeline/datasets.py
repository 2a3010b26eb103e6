"""Turns --dataset/--data-dir into a raw MovieLens folder on disk."""
import dataclasses
import pathlib
from typing import Optional

from components.ingest import download, movielens, spans, synthetic

# synthetic, then every dataset GroupLens publishes that we download: ml-100k, ml-1m, and the
# CSV family (ml-latest-small, ml-20m, ml-25m, ml-32m). The CLI's --dataset choices.
DATASETS = ('synthetic', *download.DATASETS)


@dataclasses.dataclass(frozen=True)
class SyntheticSize:
  """The default is about a fifth of ml-100k: the demo runs in a few minutes offline."""
  num_users: int = 400
  num_movies: int = 500
  num_ratings: int = 25_000
  seed: int = 0


def resolve_data_dir(dataset: str, workdir: str, data_dir: Optional[str] = None,
                     cache_dir: Optional[str] = None,
                     synthetic_size: SyntheticSize = SyntheticSize()) -> pathlib.Path:
  """The raw folder to ingest: --data-dir as given (a MovieLens folder in any format, or a
  folder of span folders), a downloaded archive (GroupLens' folder, in the dataset's format), or
  synthetic data.

  Synthetic data (ml-100k's format: the one with user demographics) is written once per size
  and seed under <workdir>/data/ and reused, so an unchanged re-run hits the pipeline cache.
  """
  if dataset not in DATASETS:
    raise ValueError(f'dataset {dataset!r} is not one of {DATASETS}')
  if data_dir:
    path = pathlib.Path(data_dir)
    numbers = spans.span_numbers(path)  # span folders: the newest is the one a run ingests
    # fails early, naming the folder and expected files
    fmt = movielens.detect_format(spans.span_folder(path, numbers[-1]) if numbers else path)
    if dataset != 'synthetic' and fmt != movielens.DATASET_FORMATS[dataset]:
      print(f'note: --dataset {dataset} but {path} holds {fmt} files; reading it as {fmt}')
    return path.resolve()
  if dataset == 'synthetic':
    size = synthetic_size
    path = pathlib.Path(workdir, 'data', f'synthetic-u{size.num_users}-m{size.num_movies}'
                        f'-r{size.num_ratings}-s{size.seed}')
    if not movielens.is_file(movielens.ratings_path(path, 'ml-100k')):
      print(f'Generating synthetic MovieLens data into {path}')
      synthetic.generate(path, num_users=size.num_users, num_movies=size.num_movies,
                         num_ratings=size.num_ratings, seed=size.seed)
    return path.resolve()
  cache = pathlib.Path(cache_dir) if cache_dir else download.default_cache_dir()
  return download.fetch_dataset(dataset, cache).resolve()
