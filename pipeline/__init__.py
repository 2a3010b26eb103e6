"""The TFX pipeline: its config, its definition and the local runner's CLI."""
import components  # noqa: F401  (process set-up before TensorFlow loads: see components/__init__)
