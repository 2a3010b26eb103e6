"""The TFX pipeline: its config, its definition and the local runner's CLI."""
