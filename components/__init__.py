"""TFX components and model code for the MovieLens recommender.

Importing the package sets up the process for everything that uses it (pipeline, trainer in
its own container, serving, benchmarks, tests): TFRS 0.7.3 needs Keras 2, which
TF_USE_LEGACY_KERAS selects before TensorFlow is first imported. Every entry point imports
this package (directly or through `pipeline` / `serving`) before TensorFlow.
"""
import os
import warnings

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # no CUDA-plugin noise on CPU machines
# Python 3.10 end-of-support notices from Google client libraries, printed on every import.
warnings.filterwarnings('ignore', category=FutureWarning, module='google')
