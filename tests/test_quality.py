"""make bench-quality (benchmarks/quality.py): the split each kind of model is benchmarked on."""
import pytest

from benchmarks import quality


@pytest.mark.parametrize('argv, split', [
    (['--model', 'retrieval'], 'random'),  # rating kinds: the tutorials' random split
    (['--model', 'multitask'], 'random'),
    (['--model', 'sequential'], 'last'),  # timeline kinds: leave-last-out
    (['--model', 'sequential', '--split', 'random'], 'random'),  # the tutorial's hash split
    (['--model', 'retrieval', '--split', 'time'], 'time'),
])
def test_the_split_defaults_by_kind_and_can_be_overridden(argv, split):
  assert quality.parse_args(argv).split == split


def test_the_help_and_the_printout_name_the_protocol(capsys):
  with pytest.raises(SystemExit):
    quality.parse_args(['--help'])
  help_text = ' '.join(capsys.readouterr().out.split())
  assert '(default: per model kind: retrieval random, multitask random, sequential last)' in help_text
  assert 'leave-last-out' in quality.protocol(True, 'last')
  assert 'whole history' in quality.protocol(True, 'last')
  assert quality.protocol(False, 'random').startswith('random split')
