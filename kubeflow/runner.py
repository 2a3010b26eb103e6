"""Compiles create_pipeline(config) into a Kubeflow Pipelines V2 job spec (make kubeflow-compile).

The spec runs every component in the pipeline image (kubeflow/Dockerfile), which holds this
repository and the locked dependencies: functions are referenced by dotted path, and the curated
schemas by their paths inside the image. Data, artifacts and pushed models live on storage every
step can reach: gs://, s3:// or a volume mounted at the same path in each step.
"""
import argparse
import dataclasses
import json
import os
import sys
from typing import List, Optional, Sequence

from components.features import RATING_SCALES
from components.model import distribution, kinds
from components.model.config import MODEL_KINDS, ModelConfig
from pipeline.config import PipelineConfig

# Where kubeflow/Dockerfile puts the repository inside the pipeline image.
IMAGE_REPO_DIR = '/pipeline'
IMAGE_SCHEMA_FILE = f'{IMAGE_REPO_DIR}/components/schema/schema.pbtxt'
IMAGE_TIMELINE_SCHEMA_FILE = f'{IMAGE_REPO_DIR}/components/schema/timelines.pbtxt'
DEFAULT_IMAGE = 'movielens-recommender-pipeline:latest'
DEFAULT_OUTPUT = os.path.join('kubeflow', 'build', 'movielens_pipeline.json')
# The components that train (pipeline/pipeline.py): the gated model and its refit.
TRAINER_IDS = ('Trainer', 'Refit')
DEFAULT_VERTEX_MACHINE_TYPE = 'n1-standard-8'


@dataclasses.dataclass(frozen=True)
class TrainerPlacement:
  """Where the Trainer and Refit run on the cluster (docs/kubeflow.md, "Training past one
  machine").

  cpu, memory_gb: each trainer pod's limits (the spec's container resources, KFP's ResourceSpec;
    None: the cluster's defaults). With Vertex AI Training the pod only launches the job and
    machine_type sizes each training replica.
  workers: training processes. More than one needs Vertex AI Training (vertex_project and
    vertex_region): TFX's Kubeflow V2 compiler runs a component in one pod, while TFX's Vertex
    AI Trainer (tfx.extensions.google_cloud_ai_platform.Trainer) starts a CustomJob of a chief
    and workers - 1 workers, each running run_fn under the TF_CONFIG Vertex gives it; the
    model then trains with MultiWorkerMirrored (components/model/distribution.py).
  """
  workers: int = 1
  cpu: Optional[float] = None
  memory_gb: Optional[float] = None
  vertex_project: Optional[str] = None
  vertex_region: Optional[str] = None
  machine_type: str = DEFAULT_VERTEX_MACHINE_TYPE

  def __post_init__(self):
    if self.workers < 1:
      raise ValueError(f'trainer workers must be >= 1, got {self.workers}')
    if bool(self.vertex_project) != bool(self.vertex_region):
      raise ValueError('Vertex AI Training needs both a project and a region, got project '
                       f'{self.vertex_project!r}, region {self.vertex_region!r}')
    if self.workers > 1 and not self.vertex_project:
      raise ValueError(
          f'{self.workers} trainer workers need Vertex AI Training (a project and a region): '
          "TFX's Kubeflow V2 compiler runs each component in a single pod")
    for name in ('cpu', 'memory_gb'):
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        raise ValueError(f'trainer {name} must be > 0, got {getattr(self, name)}')

  @property
  def distribution(self) -> str:
    """The model's distribution (ModelConfig.distribution) for this many workers."""
    return (distribution.MultiWorkerMirrored.name if self.workers > 1
            else distribution.OneProcess.name)

  def vertex_config(self, image: str) -> dict:
    """The Vertex AI Trainer's keys of the custom_config: a CustomJob of one chief (pool 0)
    and workers - 1 workers (pool 1), every replica on the pipeline image. Vertex names them
    in TF_CONFIG as 'chief' and 'worker'."""
    from tfx import v1 as tfx
    vertex = tfx.extensions.google_cloud_ai_platform

    def pool(replicas):
      return {'machine_spec': {'machine_type': self.machine_type}, 'replica_count': replicas,
              'container_spec': {'image_uri': image}}

    pools = [pool(1)] + ([pool(self.workers - 1)] if self.workers > 1 else [])
    return {vertex.ENABLE_VERTEX_KEY: True, vertex.VERTEX_REGION_KEY: self.vertex_region,
            vertex.TRAINING_ARGS_KEY: {'project': self.vertex_project,
                                       'job_spec': {'worker_pool_specs': pools}}}

  def place(self, pipeline, image: str) -> None:
    """Puts pipeline's trainers (TRAINER_IDS) where this says."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.dsl.components.base import executor_spec
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor
    resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=self.cpu or 0, memory_limit=self.memory_gb or 0)
    for component in pipeline.components:
      if component.id not in TRAINER_IDS:
        continue
      if self.cpu or self.memory_gb:
        component.with_platform_config(resources)
      if self.vertex_project:
        # TFX's Vertex AI Trainer is this Trainer with the executor that starts the job.
        component.executor_spec = executor_spec.ExecutorClassSpec(
            vertex_executor.GenericExecutor)
        custom_config = json.loads(component.exec_properties['custom_config'])
        component.exec_properties['custom_config'] = json.dumps(
            {**custom_config, **self.vertex_config(image)})


def kubeflow_config(data_root: str, pipeline_root: str, serving_model_dir: Optional[str] = None,
                    model_kind: str = kinds.DEFAULT, beam_args: Sequence[str] = (),
                    epochs: Optional[int] = None, min_accuracy: Optional[float] = None,
                    pipeline_name: str = 'movielens-recommender',
                    spans: bool = False,
                    trainers: TrainerPlacement = TrainerPlacement(),
                    rating_scale: str = 'whole-stars') -> PipelineConfig:
  """The pipeline's config for a cluster: remote paths, the schema inside the image.

  spans: the data root holds span folders (span-<N>/, components/ingest/spans.py); each run
    ingests the newest and trains on it alone. A window of several spans needs TFX's
    SpanRangeStrategy resolver, and TFX 1.16's Kubeflow V2 compiler compiles only the
    latest-artifact and latest-blessed-model resolvers.
  trainers: where the Trainer and Refit run; the model's distribution follows its workers.
  rating_scale: the data's (features.RATING_SCALES): the compiler cannot read the data root,
    so it is given, where a local run takes it from the files' format.
  """
  model = ModelConfig.tuned(model_kind, distribution=trainers.distribution,
                            rating_scale=rating_scale,
                            **({'epochs': epochs} if epochs else {}))
  extra = {} if min_accuracy is None else {'min_accuracy': min_accuracy}
  return PipelineConfig(
      data_dir=data_root, workdir=pipeline_root, pipeline_name=pipeline_name, model=model,
      schema_file=IMAGE_SCHEMA_FILE, timeline_schema_file=IMAGE_TIMELINE_SCHEMA_FILE,
      serving_models_root=serving_model_dir,
      beam_args=tuple(beam_args), local_metadata=False, spans=spans,
      train_spans=1 if spans else None, **extra)


def compile_pipeline(config: PipelineConfig, image: str, output_path: str,
                     trainers: TrainerPlacement = TrainerPlacement()) -> str:
  """Writes the KFP V2 PipelineJob JSON for config's pipeline, every step on `image`, the
  trainers placed as `trainers` says (give kubeflow_config the same, for the model's
  distribution)."""
  from tfx import v1 as tfx

  from pipeline.pipeline import create_pipeline

  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(output_path) or '.',
      output_filename=os.path.basename(output_path))
  pipeline = create_pipeline(config)
  if config.model.distribution != trainers.distribution:
    raise ValueError(f'the model trains with {config.model.distribution!r} but the trainers '
                     f'have {trainers.workers} workers: give kubeflow_config the same placement')
  trainers.place(pipeline, image)
  runner.run(pipeline)
  return output_path


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m kubeflow.runner', description=__doc__,
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument('--data-root', required=True,
                      help='raw MovieLens folder: gs://..., s3://... or a mounted volume path')
  parser.add_argument('--pipeline-root', required=True,
                      help='artifacts root (gs://..., s3://... or a mounted volume path)')
  parser.add_argument('--serving-model-dir',
                      help='where the Pusher writes <model name>/<version>/ '
                      '(default: <pipeline root>/serving_models)')
  parser.add_argument('--model', choices=MODEL_KINDS, default=kinds.DEFAULT)
  parser.add_argument('--epochs', type=int, help='training epochs (default: the model default)')
  parser.add_argument('--min-accuracy', type=float,
                      help='absolute floor on the gated top-k accuracy')
  parser.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                      help='a Beam pipeline option for the data stages, e.g. '
                      '--beam-arg=--runner=DataflowRunner (repeatable)')
  parser.add_argument('--rating-scale', choices=tuple(RATING_SCALES), default='whole-stars',
                      help="the data's stars: whole-stars (ml-100k, ml-1m) or half-stars (the "
                      'CSV family: ml-latest-small, ml-20m, ml-25m, ml-32m)')
  parser.add_argument('--spans', action='store_true',
                      help='the data root holds span folders (span-1/, span-2/, ...): each run '
                      'ingests the newest and trains on it (a window of spans is local only: '
                      "TFX 1.16's Kubeflow V2 compiler has no span-range resolver)")
  training = parser.add_argument_group(
      'training past one pod (docs/kubeflow.md, "Training past one machine")')
  training.add_argument('--trainer-cpu', type=float, metavar='X',
                        help="CPU limit of each trainer pod (Trainer, Refit)")
  training.add_argument('--trainer-memory-gb', type=float, metavar='X',
                        help='memory limit of each trainer pod, in GB')
  training.add_argument('--trainer-workers', type=int, default=1, metavar='N',
                        help='training processes of each trainer: more than one trains with '
                        'MultiWorkerMirrored on Vertex AI Training (needs --vertex-project and '
                        '--vertex-region)')
  training.add_argument('--vertex-project', help='train on Vertex AI Training in this project')
  training.add_argument('--vertex-region', help='... in this region, e.g. us-central1')
  training.add_argument('--vertex-machine-type', default=DEFAULT_VERTEX_MACHINE_TYPE,
                        help='the machine of each Vertex AI training replica')
  parser.add_argument('--image', default=DEFAULT_IMAGE,
                      help='the pipeline image built from kubeflow/Dockerfile')
  parser.add_argument('--output', default=DEFAULT_OUTPUT, help='where the spec is written')
  args = parser.parse_args(argv)
  try:
    trainers = TrainerPlacement(args.trainer_workers, args.trainer_cpu, args.trainer_memory_gb,
                                args.vertex_project, args.vertex_region,
                                args.vertex_machine_type)
  except ValueError as error:
    parser.error(str(error))
  config = kubeflow_config(args.data_root, args.pipeline_root, args.serving_model_dir,
                           args.model, args.beam_arg, args.epochs, args.min_accuracy,
                           spans=args.spans, trainers=trainers,
                           rating_scale=args.rating_scale)
  path = compile_pipeline(config, args.image, args.output, trainers)
  where = (f'Vertex AI Training ({trainers.vertex_project}, {trainers.vertex_region}), '
           f'{trainers.workers} x {trainers.machine_type}' if trainers.vertex_project
           else 'one pod each')
  print(f'Wrote the Kubeflow V2 pipeline spec to {path}\n'
        f'  image: {args.image}\n  data: {config.data_dir}\n  artifacts: {config.pipeline_root}'
        f'\n  pushed models: {config.serving_model_dir}\n  trainers: {where}, '
        f'{config.model.distribution}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
