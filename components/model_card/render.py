"""Writes a model card (facts.CardFacts) as Markdown and as one self-contained HTML page.

The HTML embeds its plots (PNG, base64), so the page can be opened or mailed alone; the Markdown
links the same plots, written beside it. Templates: templates/model_card.{html,md}.j2.
"""
import base64
import io
import json
import os
from typing import Dict, List

import jinja2
import matplotlib

matplotlib.use('Agg')  # no display in a pipeline's container
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from components.model_card.facts import CardFacts, Signature  # noqa: E402

HTML_FILE, MARKDOWN_FILE = 'model_card.html', 'model_card.md'
TOP_K_PLOT, SEGMENTS_PLOT, TRAINING_PLOT = ('top_k_accuracy.png', 'segments.png',
                                           'training_curve.png')

# Example values per input name, for the example requests (REST, TF Serving's row format).
_EXAMPLE_VALUES = {'user_id': '42', 'movie_id': '50', 'context_movie_ids': ['1', '50', '181'],
                   'exclude_movie_ids': ['50'], 'timestamp': 893286638}


def example_request(model_name: str, signature: Signature) -> str:
  """A curl command that calls the signature over REST."""
  names = [spec.name for spec in signature.inputs]
  if names == ['inputs']:  # tf.Examples: TF Serving's Regress / Classify
    body = {'signature_name': signature.name,
            'examples': [{'user_id': '42', 'movie_id': '50'}]}
    method = 'regress' if [spec.name for spec in signature.outputs] == ['outputs'] else 'classify'
  else:
    body = {'instances': [{name: _EXAMPLE_VALUES.get(name, '') for name in names}]}
    if signature.name != 'serving_default':
      body = {'signature_name': signature.name, **body}
    method = 'predict'
  return (f"curl -d '{json.dumps(body)}' \\\n"
          f'  localhost:8501/v1/models/{model_name}:{method}')


def _png(figure) -> bytes:
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=100, bbox_inches='tight')
  plt.close(figure)
  return buffer.getvalue()


def top_k_plot(facts: CardFacts) -> bytes:
  figure, axes = plt.subplots(figsize=(5.5, 3.2))
  ks = [k for k, _, _ in facts.top_k]
  axes.plot(ks, [value for _, value, _ in facts.top_k], 'o-', label='this model')
  if any(baseline is not None for _, _, baseline in facts.top_k):
    axes.plot(ks, [baseline for _, _, baseline in facts.top_k], 's--',
              label='baseline (latest blessed)')
  axes.set_xscale('log')
  axes.set_xticks(ks, [str(k) for k in ks])
  axes.set_xlabel('k')
  axes.set_ylabel('top-k accuracy')
  axes.set_ylim(0, 1)
  axes.grid(alpha=0.3)
  axes.legend()
  return _png(figure)


def segments_plot(facts: CardFacts) -> bytes:
  """Top-k accuracy per user segment, a bar per k."""
  figure, axes = plt.subplots(figsize=(5.5, 3.2))
  ks = sorted({k for segment in facts.segments for k in segment.top_k})
  width = 0.8 / max(len(ks), 1)
  for offset, k in enumerate(ks):
    axes.bar([position + offset * width for position in range(len(facts.segments))],
             [segment.top_k.get(k, 0.0) for segment in facts.segments], width,
             label=f'top-{k}')
  axes.set_xticks([position + width * (len(ks) - 1) / 2
                   for position in range(len(facts.segments))],
                  [f'{segment.name}\n({segment.examples:,})' for segment in facts.segments],
                  fontsize=8)
  axes.set_ylabel('top-k accuracy')
  axes.set_ylim(0, 1)
  axes.grid(axis='y', alpha=0.3)
  axes.legend(fontsize=8)
  return _png(figure)


def training_plot(facts: CardFacts) -> bytes:
  """Per epoch: the training loss (left) and the validation split's top-k accuracy (right),
  a line per ensemble member, a colour per curve."""
  figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.2))
  colours: Dict[str, str] = {}
  for curve in facts.training_curve.values():
    for name, values in sorted(curve.items()):
      if name == 'loss':
        axes = loss_axes
      elif 'accuracy' in name:
        axes = accuracy_axes
      else:  # regularization, total and validation losses: in TensorBoard
        continue
      first = name not in colours
      colours.setdefault(name, f'C{len(colours)}')
      axes.plot(range(1, len(values) + 1), values, color=colours[name], alpha=0.8,
                label=name if first else None)
  for axes, label in ((loss_axes, 'loss'), (accuracy_axes, 'validation top-k accuracy')):
    axes.set_xlabel('epoch')
    axes.set_ylabel(label)
    axes.grid(alpha=0.3)
    if axes.lines:
      axes.legend(fontsize=8)
  if len(facts.training_curve) > 1:
    figure.suptitle(f'{len(facts.training_curve)} ensemble members, a line each', fontsize=9)
  return _png(figure)


def _environment() -> jinja2.Environment:
  return jinja2.Environment(
      loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), 'templates')),
      autoescape=jinja2.select_autoescape(['html']), trim_blocks=True, lstrip_blocks=True,
      undefined=jinja2.StrictUndefined)


def write(facts: CardFacts, folder: str) -> Dict[str, str]:
  """Writes the card (HTML, Markdown and the Markdown's plots) into folder; name -> path."""
  import tensorflow as tf  # gfile: the folder may be gs:// or s3://
  plots = {TOP_K_PLOT: top_k_plot(facts) if facts.top_k else b'',
           SEGMENTS_PLOT: segments_plot(facts) if facts.segments else b'',
           TRAINING_PLOT: training_plot(facts) if facts.training_curve else b''}
  examples = {signature.name: example_request(facts.model_name, signature)
              for signature in facts.signatures}
  context = dict(facts=facts, rows=metric_rows(facts), examples=examples,
                 plots={name: base64.b64encode(png).decode() for name, png in plots.items()})
  environment = _environment()
  written = {}
  tf.io.gfile.makedirs(folder)
  for name, text in ((HTML_FILE, environment.get_template('model_card.html.j2').render(context)),
                     (MARKDOWN_FILE, environment.get_template('model_card.md.j2').render(
                         context))):
    written[name] = os.path.join(folder, name)
    with tf.io.gfile.GFile(written[name], 'w') as file:
      file.write(text)
  for name, png in plots.items():
    if png:
      written[name] = os.path.join(folder, name)
      with tf.io.gfile.GFile(written[name], 'wb') as file:
        file.write(png)
  return written


def metric_rows(facts: CardFacts) -> List[Dict[str, str]]:
  """The metrics table's rows as text (shared by both templates through the facts)."""
  return [{'name': metric.name, 'value': f'{metric.value:.4f}',
           'baseline': '' if metric.baseline is None else f'{metric.baseline:.4f}',
           'gate': metric.gate} for metric in facts.metrics]
