# Set-up and entry points. Every target bootstraps .venv with pip on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision first: pip then takes the wheels this machine keeps on disk.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv browser demo screenshots lint test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(VENV)/bin/tmw run --out demo_output

# The README's pictures of the demo report.
screenshots: $(STAMP) browser
	test -f demo_output/report.html || $(MAKE) demo
	$(PY) docs/report_screenshot.py demo_output/report.html docs/images/report_top.png --height 1500
	$(PY) docs/report_screenshot.py demo_output/report.html docs/images/report_pixel_cues.png \
	  --section pixel-cues --height 2600
	$(PY) docs/report_screenshot.py demo_output/report.html docs/images/report_axis_images.png \
	  --section axis-images --height 2000
	$(PY) docs/report_screenshot.py demo_output/report.html docs/images/report_local.png \
	  --section local-explanations --height 2600

# The report test renders report.html in Debian's headless Chromium; installed here when missing (needs root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium chromium-driver >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench docs

test: $(STAMP) browser
	MPLBACKEND=Agg $(PY) -m pytest -q

test-fast: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo_output build .pytest_cache
