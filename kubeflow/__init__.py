"""Kubeflow Pipelines V2 (and Vertex AI Pipelines): compile the same pipeline into a spec."""
