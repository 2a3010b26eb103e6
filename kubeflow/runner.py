"""Compiles create_pipeline(config) into a Kubeflow Pipelines V2 job spec (make kubeflow-compile).

The spec runs every component in the pipeline image (kubeflow/Dockerfile), which holds this
repository and the locked dependencies: functions are referenced by dotted path, and the curated
schemas by their paths inside the image. Data, artifacts and pushed models live on storage every
step can reach: gs://, s3:// or a volume mounted at the same path in each step.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence

from components.model import kinds
from components.model.config import MODEL_KINDS, ModelConfig
from pipeline.config import PipelineConfig

# Where kubeflow/Dockerfile puts the repository inside the pipeline image.
IMAGE_REPO_DIR = '/pipeline'
IMAGE_SCHEMA_FILE = f'{IMAGE_REPO_DIR}/components/schema/schema.pbtxt'
IMAGE_TIMELINE_SCHEMA_FILE = f'{IMAGE_REPO_DIR}/components/schema/timelines.pbtxt'
DEFAULT_IMAGE = 'movielens-recommender-pipeline:latest'
DEFAULT_OUTPUT = os.path.join('kubeflow', 'build', 'movielens_pipeline.json')


def kubeflow_config(data_root: str, pipeline_root: str, serving_model_dir: Optional[str] = None,
                    model_kind: str = kinds.DEFAULT, beam_args: Sequence[str] = (),
                    epochs: Optional[int] = None, min_accuracy: Optional[float] = None,
                    pipeline_name: str = 'movielens-recommender',
                    spans: bool = False) -> PipelineConfig:
  """The pipeline's config for a cluster: remote paths, the schema inside the image.

  spans: the data root holds span folders (span-<N>/, components/ingest/spans.py); each run
    ingests the newest and trains on it alone. A window of several spans needs TFX's
    SpanRangeStrategy resolver, and TFX 1.16's Kubeflow V2 compiler compiles only the
    latest-artifact and latest-blessed-model resolvers.
  """
  model = ModelConfig.tuned(model_kind, **({'epochs': epochs} if epochs else {}))
  extra = {} if min_accuracy is None else {'min_accuracy': min_accuracy}
  return PipelineConfig(
      data_dir=data_root, workdir=pipeline_root, pipeline_name=pipeline_name, model=model,
      schema_file=IMAGE_SCHEMA_FILE, timeline_schema_file=IMAGE_TIMELINE_SCHEMA_FILE,
      serving_models_root=serving_model_dir,
      beam_args=tuple(beam_args), local_metadata=False, spans=spans,
      train_spans=1 if spans else None, **extra)


def compile_pipeline(config: PipelineConfig, image: str, output_path: str) -> str:
  """Writes the KFP V2 PipelineJob JSON for config's pipeline, every step on `image`."""
  from tfx import v1 as tfx

  from pipeline.pipeline import create_pipeline

  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(output_path) or '.',
      output_filename=os.path.basename(output_path))
  runner.run(create_pipeline(config))
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
  parser.add_argument('--spans', action='store_true',
                      help='the data root holds span folders (span-1/, span-2/, ...): each run '
                      'ingests the newest and trains on it (a window of spans is local only: '
                      "TFX 1.16's Kubeflow V2 compiler has no span-range resolver)")
  parser.add_argument('--image', default=DEFAULT_IMAGE,
                      help='the pipeline image built from kubeflow/Dockerfile')
  parser.add_argument('--output', default=DEFAULT_OUTPUT, help='where the spec is written')
  args = parser.parse_args(argv)
  config = kubeflow_config(args.data_root, args.pipeline_root, args.serving_model_dir,
                           args.model, args.beam_arg, args.epochs, args.min_accuracy,
                           spans=args.spans)
  path = compile_pipeline(config, args.image, args.output)
  print(f'Wrote the Kubeflow V2 pipeline spec to {path}\n'
        f'  image: {args.image}\n  data: {config.data_dir}\n  artifacts: {config.pipeline_root}'
        f'\n  pushed models: {config.serving_model_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
