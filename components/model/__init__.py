"""TFRS models: towers shared by every variant, one task module per model kind."""
