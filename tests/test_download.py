"""The downloader against a real HTTP server on 127.0.0.1 serving a small ml-100k-format zip."""

import functools
import hashlib
import http.server
import pathlib
import socket
import threading
import time
import zipfile

import pytest

from components.ingest import download, movielens, synthetic
from components.ingest.download import DownloadError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, format, *args):  # keep pytest output clean
    pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
  """A proxy from the environment must not intercept requests meant for 127.0.0.1."""
  for name in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy',
               'ALL_PROXY'):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('no_proxy', '127.0.0.1')


@pytest.fixture
def served(tmp_path):
  """Serves a folder holding ml-100k.zip (and junk.zip, not a zip) on 127.0.0.1."""
  source = synthetic.generate(tmp_path / 'source' / 'ml-100k', num_users=8, num_movies=12,
                              num_ratings=60, seed=5)
  serve_dir = tmp_path / 'www'
  serve_dir.mkdir()
  archive = serve_dir / 'ml-100k.zip'
  with zipfile.ZipFile(archive, 'w') as zipped:
    for path in sorted(source.iterdir()):
      zipped.write(path, f'ml-100k/{path.name}')
  (serve_dir / 'junk.zip').write_bytes(b'not a zip archive')
  handler = functools.partial(QuietHandler, directory=str(serve_dir))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                            daemon=True)
  thread.start()
  base_url = f'http://127.0.0.1:{server.server_address[1]}'
  server_info = {
      'url': f'{base_url}/ml-100k.zip',
      'base_url': base_url,
      'checksum': ('sha256', hashlib.sha256(archive.read_bytes()).hexdigest()),
      'source': source,
      'stop': lambda: (server.shutdown(), server.server_close()),
  }
  yield server_info
  server.shutdown()
  server.server_close()
  thread.join(timeout=5)


def closed_port_url():
  """A URL on 127.0.0.1 where nothing listens, so connecting is refused at once."""
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  return f'http://127.0.0.1:{port}/ml-100k.zip'


def test_fetch_verifies_extracts_and_reports_progress(served, tmp_path, capsys):
  cache = tmp_path / 'cache'
  folder = download.fetch_dataset('ml-100k', cache, url=served['url'],
                                  checksum=served['checksum'])
  assert folder == cache / 'ml-100k'
  assert (folder / 'u.data').read_bytes() == (served['source'] / 'u.data').read_bytes()
  assert len(list(movielens.iter_examples(folder))) == 60
  assert [p.name for p in cache.iterdir()] == ['ml-100k']  # no zip or temp folder left
  stderr = capsys.readouterr().err
  assert served['url'] in stderr and '(100%)' in stderr


def test_second_fetch_uses_the_cache_without_network(served, tmp_path):
  cache = tmp_path / 'cache'
  first = download.fetch_dataset('ml-100k', cache, url=served['url'],
                                 checksum=served['checksum'], progress=False)
  served['stop']()
  again = download.fetch_dataset('ml-100k', cache, url=served['url'],
                                 checksum=served['checksum'], progress=False)
  assert again == first
  assert download.fetch_dataset('ml-100k', cache, url=closed_port_url()) == first


def test_checksum_mismatch_raises_and_leaves_nothing(served, tmp_path):
  cache = tmp_path / 'cache'
  wrong = 'ab' * 32
  with pytest.raises(DownloadError, match='checksum') as caught:
    download.fetch_dataset('ml-100k', cache, url=served['url'], checksum=('sha256', wrong),
                           progress=False)
  message = str(caught.value)
  assert served['url'] in message and wrong in message and served['checksum'][1] in message
  assert list(cache.iterdir()) == []


def test_published_checksum_is_checked_by_default(served, tmp_path):
  """Our test archive is not GroupLens's, so the default MD5 must reject it."""
  cache = tmp_path / 'cache'
  with pytest.raises(DownloadError, match='expected md5 0e33842e24a9c977be4e0107933c0723'):
    download.fetch_dataset('ml-100k', cache, url=served['url'], progress=False)
  assert list(cache.iterdir()) == []


def test_http_404_raises(served, tmp_path):
  cache = tmp_path / 'cache'
  with pytest.raises(DownloadError, match='HTTP 404') as caught:
    download.fetch_dataset('ml-100k', cache, url=served['base_url'] + '/missing.zip',
                           checksum=served['checksum'], progress=False)
  assert '--data-dir' in str(caught.value)
  assert list(cache.iterdir()) == []


def test_archive_that_is_not_a_zip_raises(served, tmp_path):
  cache = tmp_path / 'cache'
  junk_digest = hashlib.sha256(b'not a zip archive').hexdigest()
  with pytest.raises(DownloadError, match='not a readable zip'):
    download.fetch_dataset('ml-100k', cache, url=served['base_url'] + '/junk.zip',
                           checksum=('sha256', junk_digest), progress=False)
  assert list(cache.iterdir()) == []


def test_archive_of_the_wrong_dataset_raises(served, tmp_path):
  """An ml-100k archive fetched as ml-1m holds no ratings.dat: refused, nothing kept."""
  cache = tmp_path / 'cache'
  with pytest.raises(DownloadError, match='no ratings.dat'):
    download.fetch_dataset('ml-1m', cache, url=served['url'], checksum=served['checksum'],
                           progress=False)
  assert list(cache.iterdir()) == []


def test_connection_refused_fails_fast_and_says_how_to_run_offline(tmp_path):
  started = time.monotonic()
  with pytest.raises(DownloadError, match='download of .* failed') as caught:
    download.fetch_dataset('ml-100k', tmp_path / 'cache', url=closed_port_url(), timeout=30,
                           progress=False)
  assert time.monotonic() - started < 5
  assert '--data-dir' in str(caught.value) and '--dataset synthetic' in str(caught.value)
  assert list((tmp_path / 'cache').iterdir()) == []


def test_published_sources():
  assert download.DATASETS['ml-100k'] == {
      'url': 'https://files.grouplens.org/datasets/movielens/ml-100k.zip',
      'folder': 'ml-100k',
      'checksum': ('md5', '0e33842e24a9c977be4e0107933c0723'),
  }
  assert download.DATASETS['ml-1m'] == {
      'url': 'https://files.grouplens.org/datasets/movielens/ml-1m.zip',
      'folder': 'ml-1m',
      'checksum': ('md5', 'c4d9eecfca2ab87c1945afe126590906'),
  }


def test_unknown_dataset_name(tmp_path):
  with pytest.raises(ValueError, match='ml-20m'):
    download.fetch_dataset('ml-20m', tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
  monkeypatch.setenv('MOVIELENS_CACHE_DIR', str(tmp_path / 'explicit'))
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert download.default_cache_dir() == tmp_path / 'explicit'
  monkeypatch.delenv('MOVIELENS_CACHE_DIR')
  assert download.default_cache_dir() == tmp_path / 'xdg' / 'movielens-recommender'
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert download.default_cache_dir() == pathlib.Path(
      tmp_path / 'home' / '.cache' / 'movielens-recommender')


def test_foreign_folder_in_the_way_is_reported_before_downloading(tmp_path):
  cache = tmp_path / 'cache'
  (cache / 'ml-100k').mkdir(parents=True)
  (cache / 'ml-100k' / 'notes.txt').write_text('mine')
  with pytest.raises(DownloadError, match='holds no u.data'):
    download.fetch_dataset('ml-100k', cache, url=closed_port_url())
  assert [p.name for p in (cache / 'ml-100k').iterdir()] == ['notes.txt']
