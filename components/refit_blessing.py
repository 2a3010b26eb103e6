"""RefitBlessing: the gate's blessing carried over to the refit model, once it is pushed.

With refit (PipelineConfig.refit) the model served is not the one the Evaluator blessed but
the same settings trained again on train + eval (the Refit Trainer). TFX's
LatestBlessedModelStrategy finds "the latest blessed model" through a ModelBlessing whose
`current_model_id` is the model's id; the Evaluator's names the gated model. This component
writes one that names the refit model, after the Pusher pushed it: the next run's latest
blessed model, its Evaluator baseline and its warm start's base model, is then the model that
is live.

The pipeline adds it only with span folders: there the next run's eval split is a newer span
that neither model has seen, so the comparison is fair. On a folder that is run again, the
refit model has trained on the very eval split it would be judged on, and the gated model
stays the baseline.
"""
from tfx import v1 as tfx
from tfx.types import standard_artifacts

# The ModelBlessing properties LatestBlessedModelStrategy reads (TFX's names).
BLESSED = 'blessed'
CURRENT_MODEL = 'current_model'
CURRENT_MODEL_ID = 'current_model_id'


@tfx.dsl.components.component
def RefitBlessing(
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    blessing: tfx.dsl.components.InputArtifact[standard_artifacts.ModelBlessing],
    pushed_model: tfx.dsl.components.InputArtifact[standard_artifacts.PushedModel],
    refit_blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelBlessing]
) -> None:
  """Blesses `model` (the refit one) if the gate blessed its gated twin (`blessing`) and the
  Pusher pushed it (`pushed_model`); unblessed otherwise."""
  blessed = int(blessing.get_int_custom_property(BLESSED) == 1
                and pushed_model.get_int_custom_property('pushed') == 1)
  refit_blessing.set_int_custom_property(BLESSED, blessed)
  refit_blessing.set_string_custom_property(CURRENT_MODEL, model.uri)
  refit_blessing.set_int_custom_property(CURRENT_MODEL_ID, model.id)
  refit_blessing.set_string_custom_property('gated_model',
                                            blessing.get_string_custom_property(CURRENT_MODEL))
