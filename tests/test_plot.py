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
  figure = plot.plot(files, str(output))
  assert output.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  panels = [axis for axis in figure.axes if axis.get_visible()]
  assert [axis.get_title() for axis in panels] == [
      'synthetic: retrieval', 'synthetic: sequential', 'synthetic: multitask']
  assert len(figure.axes) == 4  # a 2x2 grid, its fourth panel hidden
  for axis, model in zip(panels, ('retrieval', 'sequential', 'multitask')):
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert set(lines) == {f'{name}, seen {how}' for name in (model, 'most-popular')
                          for how in ('ranked too', 'excluded')}
    assert list(lines[f'{model}, seen excluded'].get_ydata()) == [k / 200 for k in range(1, 101)]
  assert plot.main(files + ['-o', str(tmp_path / 'cli.png')]) == 0
