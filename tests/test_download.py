"""The downloader against a real HTTP server on 127.0.0.1 serving small zips: one of ml-100k's
format, one of the CSV family's (ml-latest-small, ml-20m, ml-25m, ml-32m)."""

import functools
import hashlib
import http.server
import pathlib
import socket
import threading
import urllib.request
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


def zip_folder(source, archive, top_folder):
  """Zips source's files as GroupLens does: inside one top folder named after the dataset."""
  with zipfile.ZipFile(archive, 'w') as zipped:
    for path in sorted(source.iterdir()):
      zipped.write(path, f'{top_folder}/{path.name}')


def sha256_of(path):
  return ('sha256', hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture
def served(tmp_path):
  """Serves a folder holding ml-100k.zip, ml-latest-small.zip (CSV format) and junk.zip (not a
  zip) on 127.0.0.1."""
  source = synthetic.generate(tmp_path / 'source' / 'ml-100k', num_users=8, num_movies=12,
                              num_ratings=60, seed=5)
  csv_source = synthetic.generate(tmp_path / 'source' / 'csv', num_users=8, num_movies=12,
                                  num_ratings=60, seed=5, fmt='csv')
  serve_dir = tmp_path / 'www'
  serve_dir.mkdir()
  zip_folder(source, serve_dir / 'ml-100k.zip', 'ml-100k')
  zip_folder(csv_source, serve_dir / 'ml-latest-small.zip', 'ml-latest-small')
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
      'checksum': sha256_of(serve_dir / 'ml-100k.zip'),
      'source': source,
      'csv_url': f'{base_url}/ml-latest-small.zip',
      'csv_checksum': sha256_of(serve_dir / 'ml-latest-small.zip'),
      'csv_md5': hashlib.md5((serve_dir / 'ml-latest-small.zip').read_bytes()).hexdigest(),
      'csv_source': csv_source,
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


@pytest.mark.parametrize('name, archive, missing', [
    ('ml-1m', 'ml-100k', 'ratings.dat'),
    ('ml-25m', 'ml-100k', 'ratings.csv'),
    ('ml-100k', 'csv', 'u.data'),
])
def test_archive_of_the_wrong_dataset_raises(served, tmp_path, name, archive, missing):
  """An archive without the dataset's ratings file (u.data, ratings.dat or ratings.csv, by the
  dataset's format) is refused, and nothing is kept."""
  cache = tmp_path / 'cache'
  url, checksum = ((served['url'], served['checksum']) if archive == 'ml-100k'
                   else (served['csv_url'], served['csv_checksum']))
  with pytest.raises(DownloadError, match=f'no {missing}; is it a {name} archive'):
    download.fetch_dataset(name, cache, url=url, checksum=checksum, progress=False)
  assert list(cache.iterdir()) == []


@pytest.mark.parametrize('name', ['ml-100k', 'ml-25m'])
def test_connection_refused_fails_fast_and_says_how_to_run_offline(tmp_path, name,
                                                                  monkeypatch):
  opened = []
  real_urlopen = urllib.request.urlopen

  def counting_urlopen(*args, **kwargs):
    opened.append(args[0])
    return real_urlopen(*args, **kwargs)

  monkeypatch.setattr(urllib.request, 'urlopen', counting_urlopen)
  with pytest.raises(DownloadError, match='download of .* failed') as caught:
    download.fetch_dataset(name, tmp_path / 'cache', url=closed_port_url(), timeout=600,
                           progress=False)
  # A refused connection is one attempt, not retried until the timeout.
  assert len(opened) == 1
  assert '--data-dir' in str(caught.value) and '--dataset synthetic' in str(caught.value)
  assert list((tmp_path / 'cache').iterdir()) == []


# The published archives and checksums (sources: components/ingest/download.py's comment).
PUBLISHED = {
    'ml-100k': ('md5', '0e33842e24a9c977be4e0107933c0723'),
    'ml-1m': ('md5', 'c4d9eecfca2ab87c1945afe126590906'),
    'ml-latest-small': ('sha256',
                        '696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436'),
    'ml-20m': ('md5', 'cd245b17a1ae2cc31bb14903e1204af3'),
    'ml-25m': ('md5', '6b51fb2759a8657d3bfcbfc42b592ada'),
    'ml-32m': ('md5', 'd472be332d4daa821edc399621853b57'),
}


def test_published_sources():
  assert download.DATASETS == {
      name: {'url': f'https://files.grouplens.org/datasets/movielens/{name}.zip',
             'folder': name, 'checksum': checksum}
      for name, checksum in PUBLISHED.items()}


def test_every_dataset_has_a_format_the_readers_know():
  assert set(download.DATASETS) <= set(movielens.DATASET_FORMATS)
  assert {movielens.DATASET_FORMATS[name] for name in download.DATASETS} == set(
      movielens.FORMATS)


def test_unknown_dataset_name(tmp_path):
  with pytest.raises(ValueError, match="'ml-10m'.*ml-25m"):
    download.fetch_dataset('ml-10m', tmp_path)


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


@pytest.mark.parametrize('name, ratings_file',
                         [('ml-100k', 'u.data'), ('ml-20m', 'ratings.csv')])
def test_foreign_folder_in_the_way_is_reported_before_downloading(tmp_path, name, ratings_file):
  cache = tmp_path / 'cache'
  (cache / name).mkdir(parents=True)
  (cache / name / 'notes.txt').write_text('mine')
  with pytest.raises(DownloadError, match=f'holds no {ratings_file}'):
    download.fetch_dataset(name, cache, url=closed_port_url())
  assert [p.name for p in (cache / name).iterdir()] == ['notes.txt']


# --------------------------------------------------------------------------------------------
# The CSV family.


@pytest.mark.parametrize('name', ['ml-latest-small', 'ml-20m', 'ml-25m', 'ml-32m'])
def test_csv_dataset_is_verified_extracted_and_then_read_from_the_cache(served, tmp_path, name):
  cache = tmp_path / 'cache'
  folder = download.fetch_dataset(name, cache, url=served['csv_url'],
                                  checksum=served['csv_checksum'], progress=False)
  assert folder == cache / name
  assert sorted(p.name for p in folder.iterdir()) == ['movies.csv', 'ratings.csv']
  assert (folder / 'ratings.csv').read_bytes() == (
      served['csv_source'] / 'ratings.csv').read_bytes()
  assert movielens.detect_format(folder) == 'csv'
  assert len(list(movielens.iter_examples(folder))) == 60
  assert [p.name for p in cache.iterdir()] == [name]  # no zip or temp folder left
  served['stop']()
  assert download.fetch_dataset(name, cache, url=closed_port_url()) == folder


def test_csv_dataset_is_checked_against_the_grouplens_md5_by_default(served, tmp_path):
  cache = tmp_path / 'cache'
  with pytest.raises(DownloadError,
                     match='expected md5 6b51fb2759a8657d3bfcbfc42b592ada') as caught:
    download.fetch_dataset('ml-25m', cache, url=served['csv_url'], progress=False)
  assert 're-publishes' not in str(caught.value)  # ml-25m is fixed: a mismatch is a bad file
  assert list(cache.iterdir()) == []


def test_ml_latest_small_mismatch_says_it_may_be_a_new_release_and_how_to_pass_its_md5(
    served, tmp_path):
  cache = tmp_path / 'cache'
  with pytest.raises(DownloadError, match='expected sha256 696d65a3') as caught:
    download.fetch_dataset('ml-latest-small', cache, url=served['csv_url'], progress=False)
  message = str(caught.value)
  assert 'GroupLens re-publishes ml-latest-small' in message
  assert 'https://files.grouplens.org/datasets/movielens/ml-latest-small.zip.md5' in message
  assert 'python -m components.ingest.download ml-latest-small --checksum md5:' in message
  assert list(cache.iterdir()) == []


def test_command_line_takes_a_checksum_for_a_new_release(served, tmp_path, capsys):
  cache = tmp_path / 'cache'
  assert download.main(['ml-latest-small', '--cache-dir', str(cache), '--url',
                        served['csv_url'], '--checksum', f"MD5:{served['csv_md5'].upper()}"]) == 0
  assert capsys.readouterr().out.strip() == str(cache / 'ml-latest-small')
  assert movielens.detect_format(cache / 'ml-latest-small') == 'csv'


@pytest.mark.parametrize('checksum, complaint', [
    ('0e33842e24a9c977be4e0107933c0723', 'expected ALGORITHM:HEX'),
    ('crc32:0e33842e', 'expected ALGORITHM:HEX'),
    ('md5:0e33842e', 'a md5 digest is 32 hex digits'),
    ('sha256:' + 'g' * 64, 'a sha256 digest is 64 hex digits'),
])
def test_command_line_refuses_a_malformed_checksum_before_downloading(tmp_path, capsys,
                                                                     checksum, complaint):
  with pytest.raises(SystemExit) as exited:
    download.main(['ml-25m', '--cache-dir', str(tmp_path / 'cache'), '--url',
                   closed_port_url(), '--checksum', checksum])
  assert exited.value.code == 2
  assert complaint in capsys.readouterr().err
  assert not (tmp_path / 'cache').exists()
