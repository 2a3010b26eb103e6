"""make bench-serving: serving latency and throughput, and ScaNN against brute force at 1M.

1. Server: an ml-100k-sized model (trained by the pipeline on DATA_DIR, or on synthetic data
   of ml-100k's shape; or --model-base-path to reuse a pushed one) exported with top-10, served
   by `python -m serving` with batching off and on, in one server process and in two
   (--server_processes; --server-processes here picks the counts). Single-user top-10 requests at concurrency
   1 and 16: gRPC through the tensorflow-serving-api stubs (one client thread per concurrent
   request) and through h2load (`gRPC-C`: a C HTTP/2 client sending one user's framed
   PredictRequest, Debian package `nghttp2-client`), REST through wrk (Debian package `wrk`).
   Prints p50/p99 latency and requests/s, and at concurrency 1 the server's overhead: its p50
   over the in-process call's p50.
   In process first, the same model's signature called two ways: the TF2 concrete function of
   tf.saved_model.load, and the session callable (Session::MakeCallable) the server runs.
2. Index: ScaNN against exact brute force over 1,000,000 synthetic candidate embeddings
   (clustered, as in the TFRS efficient-serving tutorial's padded catalogue): recall@10
   against the exact top 10, and single-query latency, for a few ScaNN settings.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

import components  # noqa: F401  (process set-up before TensorFlow loads)
from components.ingest import synthetic
from serving.client import GrpcClient
from serving.demo import start_server, stop_server

# Synthetic data without DATA_DIR: ml-100k's numbers of users, movies and ratings.
ML100K_SHAPE = dict(num_users=943, num_movies=1682, num_ratings=100_000)


# --- the model and the server ---------------------------------------------------------------

def train_model(data_dir: Optional[str], scratch: str) -> str:
  """Runs the pipeline for a retrieval model (requests are user ids; top-10 export, 3 epochs:
  latency does not depend on quality)."""
  if not data_dir:
    print('DATA_DIR not given: training on synthetic data of ml-100k\'s shape')
    data_dir = str(synthetic.generate(f'{scratch}/data', **ML100K_SHAPE))
  workdir = f'{scratch}/workdir'
  command = [sys.executable, '-m', 'pipeline', 'run', '--data-dir', data_dir, '--workdir',
             workdir, '--model', 'retrieval', '--epochs', '3', '--top-k', '10',
             '--min-accuracy', '0']
  print('training:', ' '.join(command), flush=True)
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  return f'{workdir}/serving_models/retrieval'


def percentiles(latencies: Sequence[float]) -> Dict[str, float]:
  ordered = np.sort(np.asarray(latencies)) * 1000
  return {'p50_ms': float(np.percentile(ordered, 50)), 'p99_ms': float(np.percentile(ordered, 99))}


def grpc_load(target: str, user_ids: List[str], concurrency: int, seconds: float) -> Dict:
  """Closed loop: `concurrency` threads, each sending the next request when one returns."""
  clients = [GrpcClient(target, 'retrieval') for _ in range(concurrency)]
  requests = [clients[0].predict_request({'user_id': [user]}) for user in user_ids]
  for client in clients:  # warm-up: connections, first calls
    for request in requests[:20]:
      client.predict_response(request)
  latencies: List[List[float]] = [[] for _ in range(concurrency)]
  errors = [0] * concurrency
  deadline = time.perf_counter() + seconds

  def worker(slot: int):
    index = slot
    while time.perf_counter() < deadline:
      request = requests[index % len(requests)]
      index += concurrency
      started = time.perf_counter()
      try:
        clients[slot].predict_response(request)
      except Exception:  # noqa: BLE001  (counted and reported)
        errors[slot] += 1
        continue
      latencies[slot].append(time.perf_counter() - started)

  started = time.perf_counter()
  threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  elapsed = time.perf_counter() - started
  for client in clients:
    client.close()
  every = [latency for slot in latencies for latency in slot]
  return dict(percentiles(every), rps=len(every) / elapsed, errors=sum(errors))


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local users = {%s}
local next_user = 0
request = function()
  next_user = next_user %% #users + 1
  return wrk.format(nil, nil, nil, '{"instances": ["' .. users[next_user] .. '"]}')
end
"""


def h2load_grpc_load(target: str, user_id: str, concurrency: int, seconds: float,
                     scratch: str) -> Optional[Dict]:
  """gRPC Predict load from h2load (nghttp2's C HTTP/2 load generator, Debian package
  `nghttp2-client`): the framed PredictRequest of one user, sent `concurrency` at a time for
  about `seconds`; latency percentiles from its per-request log. None without h2load."""
  h2load = shutil.which('h2load')
  if not h2load:
    return None
  client = GrpcClient(target, 'retrieval')
  body = client.predict_request({'user_id': [user_id]})
  client.predict_response(body)  # answered (h2load sees the HTTP status, not gRPC's)
  client.close()
  payload = body.SerializeToString()
  data = os.path.join(scratch, 'predict.grpc')
  with open(data, 'wb') as file:  # gRPC framing: not compressed, length, message
    file.write(b'\x00' + len(payload).to_bytes(4, 'big') + payload)
  log = os.path.join(scratch, f'h2load-{concurrency}.tsv')
  url = f'http://{target}/tensorflow.serving.PredictionService/Predict'
  common = ['-c', str(concurrency), '-m', '1', '-d', data, '-H', 'content-type: application/grpc',
            '-H', 'te: trailers']
  subprocess.run([h2load, '-n', '200', *common, url], check=True, capture_output=True)  # warm-up
  output = subprocess.run([h2load, '-D', f'{seconds:.0f}', f'--log-file={log}', *common, url],
                          check=True, capture_output=True, text=True).stdout
  # 'finished in 10.00s, 983.10 req/s, 542.18KB/s': h2load's own count over its own time.
  rps = float(re.search(r'finished in [^,]+, ([0-9.]+) req/s', output)[1])
  with open(log) as file:
    rows = [line.split('\t') for line in file if line.strip()]
  ok = [int(row[2]) / 1e6 for row in rows if row[1] == '200']
  failed = next((int(token) for line in output.splitlines() if line.startswith('requests:')
                 for token, word in zip(line.split(), line.split()[1:]) if word == 'failed,'), 0)
  return dict(percentiles(ok), rps=rps, errors=failed)


def _wrk_ms(text: str) -> float:
  for unit, scale in (('us', 1e-3), ('ms', 1.0), ('s', 1000.0)):
    if text.endswith(unit):
      return float(text[:-len(unit)]) * scale
  raise ValueError(text)


def rest_load(url: str, user_ids: List[str], concurrency: int, seconds: float,
              scratch: str) -> Optional[Dict]:
  """wrk (a C load generator) against the REST predict endpoint; None without wrk."""
  wrk = shutil.which('wrk')
  if not wrk:
    return None
  script = os.path.join(scratch, 'predict.lua')
  with open(script, 'w') as file:
    file.write(WRK_SCRIPT % ', '.join(f'"{user}"' for user in user_ids))
  command = [wrk, '-t1', f'-c{concurrency}', f'-d{seconds:.0f}s', '--latency', '-s', script, url]
  subprocess.run(command[:4] + ['-d2s'] + command[5:], check=True, capture_output=True)  # warm-up
  output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  figures = {'errors': 0}
  for line in output.splitlines():
    parts = line.split()
    if parts[:1] == ['50%']:
      figures['p50_ms'] = _wrk_ms(parts[1])
    elif parts[:1] == ['99%']:
      figures['p99_ms'] = _wrk_ms(parts[1])
    elif line.startswith('Requests/sec:'):
      figures['rps'] = float(parts[1])
    elif 'Non-2xx' in line or 'Socket errors' in line:
      figures['errors'] += sum(int(token.strip(',')) for token in parts if token.strip(',').isdigit())
  return figures


def _timed(call, count: int) -> Dict[str, float]:
  for _ in range(20):  # warm-up
    call()
  latencies = []
  for _ in range(count):
    started = time.perf_counter()
    call()
    latencies.append(time.perf_counter() - started)
  return percentiles(latencies)


def bench_in_process(model_base_path: str, user_ids: List[str], count: int = 2000
                     ) -> Dict[str, float]:
  """p50/p99 of one single-user call of serving_default, in this process, two ways; returns
  the session callable's figures (the floor under the server's latency)."""
  import tensorflow as tf
  from serving import saved_model
  from serving.models import LoadedVersion
  version_dir = str(saved_model.latest_version_dir(model_base_path))
  concrete = saved_model.load(version_dir)
  loaded = LoadedVersion('retrieval', 1, version_dir)
  inputs = [{'user_id': np.array([user], dtype=object)} for user in user_ids]
  turn = iter(range(10**9))

  def concrete_call():
    request = inputs[next(turn) % len(inputs)]
    outputs = concrete(**{name: tf.constant(value) for name, value in request.items()})
    return {name: tensor.numpy() for name, tensor in outputs.items()}

  def session_call():
    return loaded.run('serving_default', inputs[next(turn) % len(inputs)])

  print(f'\n== In process: serving_default, one user per call, {count} calls ==')
  print(f'{"execution":<40}{"p50 ms":>9}{"p99 ms":>9}')
  figures = {}
  for name, call in (('TF2 concrete function (saved_model.load)', concrete_call),
                     ('session callable (our server, TF Serving)', session_call)):
    figures = _timed(call, count)
    print(f'{name:<40}{figures["p50_ms"]:>9.3f}{figures["p99_ms"]:>9.3f}', flush=True)
  loaded.close()
  return figures


def bench_server(model_base_path: str, user_ids: List[str], seconds: float, scratch: str,
                 floor_p50_ms: Optional[float] = None,
                 server_processes: Sequence[int] = (1,)) -> None:
  """floor_p50_ms: the in-process call's p50, for the overhead column. server_processes: a
  server is measured with each of these --server_processes."""
  print(f'\n== Serving: single-user top-10, {seconds:.0f} s per row ==')
  print(f'{"processes":<11}{"batching":<10}{"API":<6}{"concurrency":>12}{"p50 ms":>9}'
        f'{"p99 ms":>9}{"req/s":>9}{"errors":>8}{"overhead":>10}')
  for processes in server_processes:
    for batching in (False, True):
      flags = ['--server_processes', str(processes)] + (['--enable_batching'] if batching
                                                        else [])
      server = start_server(model_base_path, 'retrieval', 18500, 18501, flags,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
      try:
        for concurrency in (1, 16):
          rows = [('gRPC', grpc_load('127.0.0.1:18500', user_ids, concurrency, seconds)),
                  ('gRPC-C', h2load_grpc_load('127.0.0.1:18500', user_ids[0], concurrency,
                                              seconds, scratch)),
                  ('REST', rest_load('http://127.0.0.1:18501/v1/models/retrieval:predict',
                                     user_ids, concurrency, seconds, scratch))]
          setting = f'{processes:<11}{"on" if batching else "off":<10}'
          for api, figures in rows:
            if figures is None:
              tool = ('h2load (Debian: nghttp2-client)' if api == 'gRPC-C'
                      else 'wrk (Debian: wrk)')
              print(f'{setting}{api:<6}{concurrency:>12}   skipped: {tool} not found')
              continue
            overhead = (f'{figures["p50_ms"] / floor_p50_ms:>9.1f}x'
                        if floor_p50_ms and concurrency == 1 else '')
            print(f'{setting}{api:<6}{concurrency:>12}{figures["p50_ms"]:>9.2f}'
                  f'{figures["p99_ms"]:>9.2f}{figures["rps"]:>9.0f}{figures["errors"]:>8}'
                  f'{overhead}', flush=True)
      finally:
        stop_server(server)


# --- ScaNN against brute force ----------------------------------------------------------------

def synthetic_embeddings(num_candidates: int, num_queries: int, dim: int = 64,
                         num_clusters: int = 2000, seed: int = 0):
  """Candidates and queries around shared cluster centres (real catalogues cluster by taste)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_clusters, dim)).astype(np.float32)
  candidates = centres[rng.integers(num_clusters, size=num_candidates)]
  candidates += 0.5 * rng.normal(size=candidates.shape).astype(np.float32)
  queries = centres[rng.integers(num_clusters, size=num_queries)]
  queries += 0.5 * rng.normal(size=queries.shape).astype(np.float32)
  return candidates, queries


def single_query_latency(layer, queries: np.ndarray, count: int = 200) -> Dict[str, float]:
  import tensorflow as tf
  for query in queries[:10]:  # warm-up
    layer(tf.constant(query[None, :]))
  latencies = []
  for query in queries[:count]:
    started = time.perf_counter()
    layer(tf.constant(query[None, :]))[1].numpy()
    latencies.append(time.perf_counter() - started)
  return percentiles(latencies)


def bench_index(num_candidates: int, k: int = 10) -> None:
  import tensorflow as tf
  import tensorflow_recommenders as tfrs

  from components.model.export import scann_parameters

  print(f'\n== ScaNN vs brute force: {num_candidates:,} candidates, 64-d, top {k} ==', flush=True)
  candidates, queries = synthetic_embeddings(num_candidates, 1000)
  identifiers = tf.range(num_candidates)
  brute_force = tfrs.layers.factorized_top_k.BruteForce(k=k)
  brute_force.index(tf.constant(candidates), identifiers)
  exact = np.concatenate([brute_force(tf.constant(batch))[1].numpy()
                          for batch in np.array_split(queries, 10)])
  exact_latency = single_query_latency(brute_force, queries)
  print(f'brute force: p50 {exact_latency["p50_ms"]:.2f} ms, p99 {exact_latency["p99_ms"]:.2f} ms')
  default = scann_parameters(num_candidates, k)
  settings = [default,
              dict(default, num_leaves_to_search=default['num_leaves_to_search'] * 2),
              dict(default, num_reordering_candidates=default['num_reordering_candidates'] * 4)]
  print(f'{"num_leaves":>11}{"to_search":>10}{"reorder":>8}{"build s":>8}{"recall@10":>10}'
        f'{"p50 ms":>8}{"p99 ms":>8}{"speed-up":>9}')
  for setting in settings:
    started = time.perf_counter()
    scann = tfrs.layers.factorized_top_k.ScaNN(k=k, **setting)
    scann.index(tf.constant(candidates), identifiers)
    scann(tf.constant(queries[:1]))  # builds the searcher
    build_seconds = time.perf_counter() - started
    found = np.concatenate([scann(tf.constant(batch))[1].numpy()
                            for batch in np.array_split(queries, 10)])
    recall = np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)])
    latency = single_query_latency(scann, queries)
    print(f'{setting["num_leaves"]:>11}{setting["num_leaves_to_search"]:>10}'
          f'{setting["num_reordering_candidates"]:>8}{build_seconds:>8.1f}{recall:>10.4f}'
          f'{latency["p50_ms"]:>8.2f}{latency["p99_ms"]:>8.2f}'
          f'{exact_latency["p50_ms"] / latency["p50_ms"]:>8.1f}x', flush=True)
  print(f'(first row: export.scann_parameters({num_candidates:,}, {k}), what the exporter uses)')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.serving', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-dir', help='an ml-100k folder (default: synthetic, same shape)')
  parser.add_argument('--model-base-path', help='serve this pushed model instead of training one')
  parser.add_argument('--num-users', type=int, default=ML100K_SHAPE['num_users'],
                      help='requests cycle through user ids 1..N (all must be known to the model)')
  parser.add_argument('--seconds', type=float, default=10, help='per load measurement')
  parser.add_argument('--candidates', type=int, default=1_000_000)
  parser.add_argument('--server-processes', default='1,2', metavar='N,N',
                      help="the server's --server_processes to measure, comma-separated")
  parser.add_argument('--skip-server', action='store_true')
  parser.add_argument('--skip-index', action='store_true')
  args = parser.parse_args(argv)
  scratch = tempfile.mkdtemp(prefix='bench-serving-')
  print(f'machine: {os.cpu_count()} cores')
  if not args.skip_server:
    base_path = args.model_base_path or train_model(args.data_dir, scratch)
    users = [str(user) for user in range(1, args.num_users + 1)]
    floor = bench_in_process(base_path, users)
    bench_server(base_path, users, args.seconds, scratch, floor['p50_ms'],
                 [int(count) for count in args.server_processes.split(',')])
  if not args.skip_index:
    bench_index(args.candidates)
  return 0


if __name__ == '__main__':
  sys.exit(main())
