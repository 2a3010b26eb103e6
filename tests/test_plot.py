"""benchmarks/plot.py draws bench-quality's result files into one PNG."""
import json

from benchmarks import plot


def test_plot_writes_a_png_with_a_panel_per_result_file(tmp_path):
  curve = {f'top_{k}_accuracy{suffix}': k / 200 for k in range(1, 101) for suffix in ('', '_unseen')}
  files = []
  for model in ('retrieval', 'sequential', 'multitask'):
    path = tmp_path / f'quality-{model}.json'
    path.write_text(json.dumps({'dataset': 'synthetic', 'model': model,
                                'top_k_accuracy': {model: curve, 'most-popular': curve}}))
    files.append(str(path))
  output = tmp_path / 'plot.png'
  assert plot.main(files + ['-o', str(output)]) == 0
  assert output.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
