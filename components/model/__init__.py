"""TFRS models: towers shared by every variant, one class per model kind (kinds.py)."""
