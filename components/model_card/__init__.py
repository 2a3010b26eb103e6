"""A model card for every pushed model: what it is, how good it is, where it came from, and
how to call it, as Markdown and as one self-contained HTML page.

facts.py gathers the facts from the run's artifacts, render.py writes them (Jinja2 templates,
matplotlib plots), component.py is the TFX component the pipeline runs after the Pusher.
"""

from components.model_card.component import CARDS_FOLDER, ModelCard, card_folder  # noqa: E402,F401
from components.model_card.render import HTML_FILE  # noqa: E402,F401
