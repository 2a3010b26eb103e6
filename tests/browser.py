"""A real headless browser for the tests of pages: Chromium, Debian's package (`make test`
installs it: scripts/install_tools.sh)."""
import pathlib
import shutil
import subprocess

# Appended to a copy of a page before it is rendered: marks each image with the width the
# browser decoded it to (0: broken), so a test reads what the browser drew, not the source.
IMAGE_WIDTHS = ("<script>for (const image of document.images) "
                "image.setAttribute('data-rendered-width', image.naturalWidth);</script>")


def chromium() -> str:
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  raise RuntimeError('no Chromium: `make test` installs it (scripts/install_tools.sh; on '
                     'Debian: apt-get install chromium)')


def _run(page: pathlib.Path, *flags: str) -> str:
  command = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
             *flags, page.resolve().as_uri()]
  return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def rendered_dom(page: pathlib.Path, scratch: pathlib.Path) -> str:
  """The page's DOM after Chromium loaded it (scripts run, images decoded: IMAGE_WIDTHS)."""
  copy = scratch / page.name
  copy.write_text(page.read_text().replace('</body>', IMAGE_WIDTHS + '</body>'))
  return _run(copy, '--virtual-time-budget=5000', '--dump-dom')


def screenshot(page: pathlib.Path, png: pathlib.Path, width: int = 1100,
               height: int = 1400) -> pathlib.Path:
  _run(page, f'--screenshot={png.resolve()}', f'--window-size={width},{height}')
  return png
