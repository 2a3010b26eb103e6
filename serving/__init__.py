"""Serving: loading pushed SavedModels and answering recommendation requests."""
