"""The curated schema, imported with the rating domain of the dataset's scale.

TFX's ImportSchemaGen copies a schema file as it is; the curated schemas (components/schema/)
hold every rule but the rating's domain, which depends on the data: whole stars 1..5 for
ml-100k and ml-1m, half stars 0.5..5 for the CSV family (features.RATING_SCALES). So this step
imports the file and sets the domain, and the ExampleValidator still stops a run whose ratings
leave the dataset's scale. (Why not one domain of 0.5..5 for all: a half star in an ml-100k
file is a broken file, and would pass.)
"""
import os

from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from components import features as f

SCHEMA_FILE_NAME = 'schema.pbtxt'  # the name ImportSchemaGen and SchemaGen write


def schema_with_rating_scale(schema_file: str, rating_scale: str) -> schema_pb2.Schema:
  """The schema in schema_file with user_rating's float domain set to the scale's range."""
  schema = io_utils.parse_pbtxt_file(schema_file, schema_pb2.Schema())
  scale = f.RATING_SCALES[rating_scale]
  ratings = [feature for feature in schema.feature if feature.name == f.USER_RATING]
  if len(ratings) != 1:
    raise ValueError(f'{schema_file}: expected one feature {f.USER_RATING!r}, found '
                     f'{len(ratings)}')
  ratings[0].float_domain.min = scale.minimum
  ratings[0].float_domain.max = scale.maximum
  return schema


@tfx.dsl.components.component
def CuratedSchemaGen(schema: tfx.dsl.components.OutputArtifact[standard_artifacts.Schema],
                     schema_file: tfx.dsl.components.Parameter[str],
                     rating_scale: tfx.dsl.components.Parameter[str] = 'whole-stars') -> None:
  """ImportSchemaGen, with the rating's domain from rating_scale (a features.RATING_SCALES
  name)."""
  io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE_NAME),
                            schema_with_rating_scale(schema_file, rating_scale))
