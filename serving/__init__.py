"""Serving: a TF-Serving-compatible server and client for the pushed SavedModels."""
import components  # noqa: F401  (process set-up before TensorFlow loads: see components/__init__)
