"""Patches a TF Serving source tree to link the ScaNN ops (used by serving/docker/Dockerfile).

Adds ScaNN (google-research at a pinned commit) as the Bazel repository @com_google_scann and
its static op library to SUPPORTED_TENSORFLOW_OPS, as google-research/scann/tf_serving's
serving.patch does. Editing by anchor text instead of applying a diff keeps it working across
TF Serving releases; it fails loudly if an anchor is gone.
"""
import argparse
import pathlib
import sys

SCANN_OPS = '"@com_google_scann//scann/scann_ops/cc:scann_ops_static"'
WORKSPACE_RULE = '''
    http_archive(
        name = "com_google_scann",
        strip_prefix = "google-research-{commit}/scann",
        url = "https://github.com/google-research/google-research/archive/{commit}.zip",
    )
'''


def patch(serving_root: pathlib.Path, commit: str) -> None:
  build = serving_root / 'tensorflow_serving' / 'model_servers' / 'BUILD'
  text = build.read_text()
  anchor = 'SUPPORTED_TENSORFLOW_OPS = '
  if anchor not in text:
    sys.exit(f'{build}: no "{anchor}" to extend')
  if SCANN_OPS not in text:  # prepended: whatever the rest of the expression looks like
    build.write_text(text.replace(anchor, f'{anchor}[{SCANN_OPS}] + ', 1))
  workspace = serving_root / 'tensorflow_serving' / 'workspace.bzl'
  text = workspace.read_text()
  if 'com_google_scann' not in text:
    if 'def tf_serving_workspace():' not in text:
      sys.exit(f'{workspace}: no tf_serving_workspace() to extend')
    workspace.write_text(text.rstrip('\n') + '\n' + WORKSPACE_RULE.format(commit=commit))
  print(f'linked ScaNN {commit} into {serving_root}')


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('serving_root', type=pathlib.Path)
  parser.add_argument('--scann-commit', required=True)
  args = parser.parse_args()
  patch(args.serving_root, args.scann_commit)
