"""Entry point: python -m pipeline {run,recommend} --help."""
import sys

from pipeline.cli import main

sys.exit(main())
