"""Downloads a GroupLens MovieLens archive into a cache folder, verified and extracted.

Why this shape: the download is the one step that touches the network, so it is done once,
checked against the published checksum (a truncated or tampered archive must not become
training data), and published into the cache with a rename, so that an interrupted run
leaves either a complete dataset folder or nothing at all.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import pathlib
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import BinaryIO, Callable

from components.ingest import movielens

# Checksums are the MD5s GroupLens publishes beside each archive
# (https://files.grouplens.org/datasets/movielens/<name>.zip.md5), where we found them quoted
# alike by several projects that verify downloads against them; ml-latest-small's is the sha256
# TensorFlow Datasets records (tensorflow_datasets/url_checksums/movielens.txt: size, sha256).
# Cross-checks from that TFDS file, size in bytes and sha256:
#   ml-100k.zip          4924029  50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229
#   ml-1m.zip            5917549  a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20
#   ml-20m.zip         198702078  96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3
#   ml-25m.zip         261978986  8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa
#   ml-latest-small.zip   978202  696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436
# ml-32m.zip (not in TFDS) is 238950008 bytes as projects checking its MD5 report.
# ml-latest-small is re-published from time to time (the 2018-09 release is the one above), and
# each release has a new checksum: a mismatch for it says so and how to pass the new one
# (REPUBLISHED). Every archive is verified: there is no way to skip the check.
_GROUPLENS = 'https://files.grouplens.org/datasets/movielens'
_CHECKSUMS = {
    'ml-100k': ('md5', '0e33842e24a9c977be4e0107933c0723'),
    'ml-1m': ('md5', 'c4d9eecfca2ab87c1945afe126590906'),
    'ml-latest-small': (
        'sha256', '696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436'),
    'ml-20m': ('md5', 'cd245b17a1ae2cc31bb14903e1204af3'),
    'ml-25m': ('md5', '6b51fb2759a8657d3bfcbfc42b592ada'),
    'ml-32m': ('md5', 'd472be332d4daa821edc399621853b57'),
}
# Each archive unpacks into a folder of its name.
DATASETS: dict[str, dict] = {
    name: {'url': f'{_GROUPLENS}/{name}.zip', 'folder': name, 'checksum': checksum}
    for name, checksum in _CHECKSUMS.items()}
# Datasets GroupLens re-publishes under the same name (new ratings, new checksum).
REPUBLISHED = frozenset({'ml-latest-small'})

_CHUNK_BYTES = 1 << 16
_PROGRESS_INTERVAL_S = 0.5
_OFFLINE_HINT = ('to run offline, pass --data-dir DIR (an extracted MovieLens folder) '
                 'or --dataset synthetic')


class DownloadError(RuntimeError):
  """The dataset could not be fetched, verified or unpacked; nothing partial was left behind."""


def default_cache_dir() -> pathlib.Path:
  """$MOVIELENS_CACHE_DIR, else $XDG_CACHE_HOME/movielens-recommender, else ~/.cache/...."""
  explicit = os.environ.get('MOVIELENS_CACHE_DIR')
  if explicit:
    return pathlib.Path(explicit).expanduser()
  xdg_cache = os.environ.get('XDG_CACHE_HOME')
  base = pathlib.Path(xdg_cache).expanduser() if xdg_cache else pathlib.Path.home() / '.cache'
  return base / 'movielens-recommender'


def fetch_dataset(name: str, cache_dir, *, url: str | None = None,
                  checksum: tuple[str, str] | None = None, timeout: float = 30,
                  progress: bool = True) -> pathlib.Path:
  """Returns the extracted folder holding the ratings file, downloading it only if needed.

  url and checksum override the published ones (checksum is (hashlib algorithm, hex digest)),
  e.g. for a mirror, or for a re-published ml-latest-small.
  """
  if name not in DATASETS:
    raise ValueError(f'unknown dataset {name!r}; expected one of {sorted(DATASETS)}')
  source = DATASETS[name]
  url = url or source['url']
  algorithm, expected_digest = checksum or source['checksum']
  cache_dir = pathlib.Path(cache_dir)
  target = cache_dir / source['folder']
  if _is_complete(target, name):
    return target
  _refuse_incomplete_folder(target, name)
  cache_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f'.{name}.tmp-') as scratch:
    archive = pathlib.Path(scratch) / f'{name}.zip'
    actual_digest = _download(url, archive, hashlib.new(algorithm), timeout, progress)
    if actual_digest != expected_digest.lower():
      raise DownloadError(
          f'checksum mismatch for {url}: expected {algorithm} {expected_digest}, '
          f'got {actual_digest}; the download was deleted'
          + (_republished_hint(name) if name in REPUBLISHED and not checksum else ''))
    extracted = _extract(archive, pathlib.Path(scratch) / 'extracted', name, url)
    _publish(extracted, target, name)
  return target


def _republished_hint(name: str) -> str:
  return (f'. GroupLens re-publishes {name} from time to time, each release with a new '
          'checksum; if this is a new release, take its MD5 from '
          f'{DATASETS[name]["url"]}.md5 and pass it: python -m components.ingest.download '
          f'{name} --checksum md5:<that digest> (the pipeline then finds it in the cache)')


def _ratings_file_name(name: str) -> str:
  """The ratings file a dataset's folder holds: u.data, ratings.dat or ratings.csv."""
  return movielens.FILE_NAMES[movielens.DATASET_FORMATS[name]]['ratings']


def _is_complete(folder: pathlib.Path, name: str) -> bool:
  return movielens.is_file(
      movielens.ratings_path(folder, fmt=movielens.DATASET_FORMATS[name]))


def _refuse_incomplete_folder(target: pathlib.Path, name: str) -> None:
  """Fails before downloading if a foreign folder is in the way; we would not overwrite it."""
  if target.exists() and (not target.is_dir() or any(target.iterdir())):
    raise DownloadError(
        f'{target} exists but holds no {_ratings_file_name(name)}; '
        'delete it, or choose another cache folder, and retry')


# --------------------------------------------------------------------------------------------
# Downloading.


def _download(url: str, destination: pathlib.Path, hasher, timeout: float,
              progress: bool) -> str:
  """Streams url into destination, hashing as it goes; returns the hex digest."""
  report = _progress_reporter(url) if progress else (lambda done, total, final=False: None)
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response:
      total = _content_length(response)
      with open(destination, 'wb') as out:
        done = _copy(response, out, hasher, lambda done: report(done, total))
      report(done, total, final=True)
  except urllib.error.HTTPError as error:
    raise DownloadError(
        f'download of {url} failed: HTTP {error.code} {error.reason}; {_OFFLINE_HINT}'
    ) from error
  except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
    # connection refused, unreachable host, DNS failure, timeout, dropped connection
    reason = getattr(error, 'reason', error)
    raise DownloadError(f'download of {url} failed: {reason}; {_OFFLINE_HINT}') from error
  if total is not None and done != total:
    raise DownloadError(f'download of {url} failed: got {done} of {total} bytes; '
                        f'{_OFFLINE_HINT}')
  return hasher.hexdigest()


def _content_length(response) -> int | None:
  length = response.headers.get('Content-Length')
  return int(length) if length and length.isdigit() else None


def _copy(source: BinaryIO, out: BinaryIO, hasher, on_chunk: Callable[[int], None]) -> int:
  done = 0
  while chunk := source.read(_CHUNK_BYTES):
    out.write(chunk)
    hasher.update(chunk)
    done += len(chunk)
    on_chunk(done)
  return done


def _progress_reporter(url: str):
  """A callback printing 'bytes / total (percent)' to stderr at most every half second."""
  last_printed = [float('-inf')]

  def report(done: int, total: int | None, final: bool = False) -> None:
    now = time.monotonic()
    if not final and now - last_printed[0] < _PROGRESS_INTERVAL_S:
      return
    last_printed[0] = now
    if total:
      status = f'{_megabytes(done)} / {_megabytes(total)} ({100 * done / total:.0f}%)'
    else:
      status = _megabytes(done)
    print(f'downloading {url}: {status}', file=sys.stderr, flush=True)

  return report


def _megabytes(num_bytes: int) -> str:
  return f'{num_bytes / 1e6:.1f} MB'


# --------------------------------------------------------------------------------------------
# Unpacking and publishing.


def _extract(archive: pathlib.Path, into: pathlib.Path, name: str, url: str) -> pathlib.Path:
  """Unzips and returns the folder holding the ratings file (top level or one folder down)."""
  into.mkdir()
  try:
    with zipfile.ZipFile(archive) as zipped:
      zipped.extractall(into)  # extractall drops '..' and absolute paths
  except (zipfile.BadZipFile, zlib.error, EOFError) as error:
    raise DownloadError(f'{url} is not a readable zip archive: {error}') from error
  for candidate in (into, *sorted(p for p in into.iterdir() if p.is_dir())):
    if _is_complete(candidate, name):
      return candidate
  raise DownloadError(
      f'archive from {url} holds no {_ratings_file_name(name)}; is it a {name} archive?')


def _publish(extracted: pathlib.Path, target: pathlib.Path, name: str) -> None:
  """Renames the extracted folder into place; if another process won the race, keep theirs."""
  try:
    os.replace(extracted, target)
  except OSError as error:
    if _is_complete(target, name):
      return
    raise DownloadError(f'cannot move the extracted dataset to {target}: {error}') from error


_CHECKSUM_ALGORITHMS = ('md5', 'sha1', 'sha256', 'sha512')


def _checksum_argument(text: str) -> tuple[str, str]:
  """'md5:0e33...' -> ('md5', '0e33...'): an algorithm hashlib knows and a hex digest of its
  length, so a typo fails here rather than as a mismatch after the download."""
  algorithm, _, digest = text.partition(':')
  algorithm, digest = algorithm.lower(), digest.lower()
  if algorithm not in _CHECKSUM_ALGORITHMS:
    raise argparse.ArgumentTypeError(
        f'{text!r}: expected ALGORITHM:HEX, ALGORITHM one of {", ".join(_CHECKSUM_ALGORITHMS)}, '
        'e.g. md5:<32 hex digits> (GroupLens publishes MD5s)')
  length = hashlib.new(algorithm).digest_size * 2
  if len(digest) != length or any(char not in '0123456789abcdef' for char in digest):
    raise argparse.ArgumentTypeError(
        f'{text!r}: a {algorithm} digest is {length} hex digits')
  return algorithm, digest


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m components.ingest.download',
      description='Download and extract a MovieLens dataset into the cache.')
  parser.add_argument('name', choices=list(DATASETS))
  parser.add_argument('--cache-dir', type=pathlib.Path, default=None,
                      help=f'default: {default_cache_dir()}')
  parser.add_argument('--url', help='download from here instead (a mirror); still verified')
  parser.add_argument('--checksum', type=_checksum_argument, metavar='ALGORITHM:HEX',
                      help='verify against this instead of the published checksum, e.g. '
                      'md5:<the digest in GroupLens\' <name>.zip.md5> for a re-published '
                      'ml-latest-small')
  args = parser.parse_args(argv)
  try:
    folder = fetch_dataset(args.name, args.cache_dir or default_cache_dir(), url=args.url,
                           checksum=args.checksum)
  except DownloadError as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  print(folder)
  return 0


if __name__ == '__main__':
  sys.exit(main())
