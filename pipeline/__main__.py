"""Entry point: python -m pipeline {run,replay,recommend} --help."""
import sys

from pipeline.cli import main

sys.exit(main())
