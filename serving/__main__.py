"""python -m serving: the local TF-Serving-compatible model server (see serving/server.py)."""
import sys

from serving.server import main

sys.exit(main())
