"""Named sets of Beam options for the pipeline's data stages (--beam-preset).

Explicit --beam-arg options are added after a preset's, so they win. Cluster presets carry
placeholders (FLINK_MASTER, SPARK_JOB_SERVER, PROJECT, REGION, BUCKET) to replace, through
--beam-arg or by editing here.
"""
import os
from typing import Dict, Sequence, Tuple

PRESETS: Dict[str, Tuple[str, ...]] = {
    # Beam's DirectRunner in this process: the default, least overhead on small data.
    'in-memory': ('--direct_running_mode=in_memory', '--direct_num_workers=1'),
    # DirectRunner with one worker process per core: stages leave this process.
    'multi-processing': ('--direct_running_mode=multi_processing',
                         f'--direct_num_workers={os.cpu_count() or 1}'),
    # The portable runner with an embedded job service: the Fn API path that Flink, Spark and
    # Dataflow use, on this machine. For checking a pipeline before it goes to a cluster.
    'portable-local': ('--runner=PortableRunner', '--job_endpoint=embed',
                       '--environment_type=LOOPBACK'),
    # Apache Flink: Beam starts a Flink job server for the given cluster. Workers run the
    # pipeline image (kubeflow/Dockerfile) as their SDK harness.
    'flink': ('--runner=FlinkRunner', '--flink_master=FLINK_MASTER:8081',
              '--environment_type=DOCKER',
              '--environment_config=movielens-recommender-pipeline:latest'),
    # Apache Spark through a running Beam Spark job server.
    'spark': ('--runner=PortableRunner', '--job_endpoint=SPARK_JOB_SERVER:8099',
              '--environment_type=DOCKER',
              '--environment_config=movielens-recommender-pipeline:latest'),
    # Google Cloud Dataflow, workers on the pipeline image.
    'dataflow': ('--runner=DataflowRunner', '--project=PROJECT', '--region=REGION',
                 '--temp_location=gs://BUCKET/tmp',
                 '--sdk_container_image=movielens-recommender-pipeline:latest',
                 '--experiments=use_runner_v2'),
}


def beam_args(preset: str, extra: Sequence[str] = ()) -> Tuple[str, ...]:
  """The preset's options followed by the explicit ones."""
  if preset not in PRESETS:
    raise ValueError(f'Beam preset {preset!r} is not one of {sorted(PRESETS)}')
  return PRESETS[preset] + tuple(extra)
