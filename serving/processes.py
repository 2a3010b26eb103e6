"""--server_processes N: N server processes answering on the same ports, for throughput past
one core.

Why: every request costs Python time under one interpreter lock (grpcio's server hands each
call to a Python thread; the servicer turns protos into arrays and back: about 0.5 ms of a gRPC
Predict, docs/benchmarks.md "Serving"), so one process serves about 1,300 gRPC requests/s
however many cores it has. N processes have N locks. TF Serving needs none of this (its
server is C++); a Kubernetes deployment scales with replicas (kubeflow/serving/), this flag
scales one machine or one pod.

How: this process (the supervisor) checks that the ports are free, keeps them bound with
SO_REUSEPORT but never listens on them (so `--port 0` picks one port for all), and starts N
`python -m serving` children with the same flags and those ports. Each child binds them with
SO_REUSEPORT too, and the kernel spreads new connections over the children's listening
sockets. Connections, not requests, are spread: a gRPC channel (one HTTP/2 connection) stays
with one process, so a client that wants several processes opens several channels
(serving.client.GrpcClient opens one connection a client); a load balancer's many
connections spread by themselves.

What each child holds on its own: its models (N times the memory), its batching queues, its
version watchers and config-file watcher (each reads the same folders and file, so they serve
the same versions, but not at the same instant: during a push one process may answer from the
new version while another still answers from the old, as replicas behind a load balancer
do). What is shared: the ports, and the Prometheus metrics where a --monitoring_config_file
serves them (each child publishes its counters to a folder every second and the one that
answers a scrape adds them up: the page counts every process, its siblings' figures at most
METRICS_PUBLISH_SECONDS old). What is refused: gRPC HandleReloadConfigRequest, which would
reach one process: change --model_config_file, which every process reads
(--model_config_file_poll_wait_seconds).

The supervisor holds no model and no TensorFlow: `python -m serving` checks the flags, then
replaces itself (exec, same pid) with `python -m serving.processes`, about 20 MB instead of
TensorFlow's 600.

Lifetime: SIGTERM or SIGINT to the supervisor stops every child (SIGTERM, then SIGKILL after
STOP_SECONDS); a child whose supervisor is killed stops itself. A child that exits on its own
stops the others and the supervisor, with the child's exit code: a server short of a process
is a failure the orchestrator should see and restart, not a silent loss of capacity.
"""
import argparse
import dataclasses
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, List, Optional, Sequence

from serving import monitoring

METRICS_PUBLISH_SECONDS = 1.0
STOP_SECONDS = 30.0
RELOAD_REFUSAL = ('this server runs {count} processes (--server_processes), each with its own '
                  'models, and a reload would reach one of them: change the '
                  '--model_config_file instead, which every process reads again every '
                  '--model_config_file_poll_wait_seconds')


@dataclasses.dataclass(frozen=True)
class ServerProcess:
  """One of a supervisor's children: its index (0-based) of count, its supervisor's pid, and
  the folder where the children publish their metrics."""
  index: int
  count: int
  supervisor: int
  metrics_dir: str

  @property
  def name(self) -> str:
    return f'process {self.index + 1}/{self.count}'

  @classmethod
  def parse(cls, text: str) -> 'ServerProcess':
    """The hidden --supervised_as flag's value, 'index:count:supervisor:metrics_dir'."""
    index, count, supervisor, metrics_dir = text.split(':', 3)
    return cls(int(index), int(count), int(supervisor), metrics_dir)

  def flag(self) -> str:
    return f'{self.index}:{self.count}:{self.supervisor}:{self.metrics_dir}'


class SharedMetrics(monitoring.Metrics):
  """One child's counters, published to the supervisor's folder every
  METRICS_PUBLISH_SECONDS (start() to stop()); its exposition adds up every child's."""

  def __init__(self, process: ServerProcess):
    super().__init__()
    self.process = process
    self._path = os.path.join(process.metrics_dir, f'{process.index}.json')
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._publish_until_stopped, daemon=True,
                                    name='metrics-publisher')

  def publish(self) -> None:
    """Writes the snapshot atomically (a sibling never reads half a file)."""
    partial = f'{self._path}.{os.getpid()}.partial'
    with open(partial, 'w') as file:
      json.dump(self.snapshot(), file)
    os.replace(partial, self._path)

  def _publish_until_stopped(self) -> None:
    while not self._stop.wait(METRICS_PUBLISH_SECONDS):
      self.publish()

  def start(self) -> None:
    self.publish()
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread.is_alive():
      self._thread.join()
    try:
      self.publish()
    except OSError:  # the supervisor, stopping too, may have removed the folder
      pass

  def exposition(self) -> str:
    """This process's counters now, plus each sibling's last published ones."""
    total = monitoring.Metrics()
    total.add(self.snapshot())
    for path in glob.glob(os.path.join(self.process.metrics_dir, '*.json')):
      if path != self._path:
        with open(path) as file:
          total.add(json.load(file))
    return total.exposition()


def stop_when_orphaned(supervisor: int, log: Callable[[str], None],
                       poll_seconds: float = 1.0) -> None:
  """In a child: SIGTERM to itself once its supervisor (pid) is gone (killed, out of memory),
  so that no orphan goes on holding the ports with nobody to stop it. The pid comes from the
  supervisor, not os.getppid() here: a supervisor killed while the child was still loading
  has already left the child to another parent."""

  def watch():
    while os.getppid() == supervisor:
      time.sleep(poll_seconds)
    log(f'the supervisor (pid {supervisor}) is gone: stopping')
    os.kill(os.getpid(), signal.SIGTERM)

  threading.Thread(target=watch, daemon=True, name='supervisor-watch').start()


def reserve_port(host: str, port: int, what: str) -> socket.socket:
  """A socket bound to host:port with SO_REUSEPORT and not listening: it keeps the port (and
  the number --port 0 picked) for the children, and takes no connections itself.

  OSError naming what the port is for if another program already holds it: a first bind
  without SO_REUSEPORT fails on any socket bound there, where a bind with it would join
  another program's reuse-port group and share its traffic."""
  family = socket.AF_INET6 if ':' in host else socket.AF_INET
  for reuse in (False, True):
    reserved = socket.socket(family, socket.SOCK_STREAM)
    try:
      reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      if reuse:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
      reserved.bind((host, port))
    except OSError as error:
      reserved.close()
      raise OSError(f'cannot listen on {host}:{port} for {what}: {error}') from None
    if not reuse:
      port = reserved.getsockname()[1]  # --port 0: the free port the kernel chose
      reserved.close()
  return reserved


def child_command(argv: Sequence[str], process: ServerProcess, grpc_port: int,
                  rest_port: int) -> List[str]:
  """The supervisor's flags for one child, its ports made explicit (later flags win)."""
  return [sys.executable, '-m', 'serving', *argv, '--port', str(grpc_port),
          '--rest_api_port', str(rest_port), '--supervised_as', process.flag()]


class Supervisor:
  """Starts count children of `python -m serving argv` on host's ports, and stops them."""

  def __init__(self, argv: Sequence[str], count: int, host: str, grpc_port: int,
               rest_port: int, log: Callable[[str], None] = print):
    self._reserved = [reserve_port(host, grpc_port, 'gRPC'),
                      reserve_port(host, rest_port, 'REST')]
    self.grpc_port, self.rest_port = (s.getsockname()[1] for s in self._reserved)
    self.metrics_dir = tempfile.mkdtemp(prefix='serving-metrics-')
    self.children: List[subprocess.Popen] = []
    for index in range(count):
      command = child_command(argv, ServerProcess(index, count, os.getpid(), self.metrics_dir),
                              self.grpc_port, self.rest_port)
      self.children.append(subprocess.Popen(command))
    log(f'Serving in {count} processes (pids {", ".join(str(c.pid) for c in self.children)}) '
        f'on gRPC port {self.grpc_port} and REST port {self.rest_port}')

  def wait(self, stop: threading.Event, poll_seconds: float = 0.2) -> int:
    """Until stop is set (0) or a child exits on its own: its exit code, 128 + the signal
    that killed it (as a shell reports it), or 1 for a child that exited with 0."""
    while not stop.wait(poll_seconds):
      for index, child in enumerate(self.children):
        code = child.poll()
        if code is not None:
          print(f'error: server process {index + 1}/{len(self.children)} (pid {child.pid}) '
                f'exited with code {code}: stopping the others', file=sys.stderr, flush=True)
          return 128 - code if code < 0 else code or 1
    return 0

  def stop(self) -> None:
    """SIGTERM to every child, SIGKILL to those still running after STOP_SECONDS."""
    for child in self.children:
      if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in self.children:
      try:
        child.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    for reserved in self._reserved:
      reserved.close()
    shutil.rmtree(self.metrics_dir, ignore_errors=True)


def supervise(argv: Sequence[str], count: int, host: str, grpc_port: int, rest_port: int,
              log: Callable[[str], None] = print) -> int:
  """Runs the children until SIGTERM / SIGINT (exit 0) or until one exits (its code)."""
  try:
    supervisor = Supervisor(argv, count, host, grpc_port, rest_port, log)
  except OSError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  stop = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: stop.set())
  try:
    code = supervisor.wait(stop)
  finally:
    supervisor.stop()
  return code


def exec_supervisor(argv: Sequence[str], count: int, host: str, grpc_port: int,
                    rest_port: int) -> None:
  """Replaces this process (a `python -m serving` that has imported TensorFlow) with the
  supervisor (main below), which does not import it; never returns."""
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, [
      sys.executable, '-m', 'serving.processes', '--count', str(count), '--host', host,
      '--grpc-port', str(grpc_port), '--rest-port', str(rest_port), '--', *argv])


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m serving.processes',
      description='The supervisor of `python -m serving --server_processes N`, which starts '
      'it (use that): runs `python -m serving SERVER_FLAGS` in COUNT processes on the ports.')
  parser.add_argument('--count', type=int, required=True)
  parser.add_argument('--host', required=True)
  parser.add_argument('--grpc-port', type=int, required=True)
  parser.add_argument('--rest-port', type=int, required=True)
  parser.add_argument('server_flags', nargs=argparse.REMAINDER, metavar='-- SERVER_FLAGS')
  args = parser.parse_args(argv)
  flags = args.server_flags[1:] if args.server_flags[:1] == ['--'] else args.server_flags
  return supervise(flags, args.count, args.host, args.grpc_port, args.rest_port,
                   log=lambda message: print(message, flush=True))


if __name__ == '__main__':
  sys.exit(main())
