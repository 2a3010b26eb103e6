"""TFX components and model code for the MovieLens recommender."""
