# The two set-up commands on a fresh machine (see README):
#   make app    installs everything into .venv and starts the playground on http://127.0.0.1:7860
#   make test   installs everything (plus Debian's chromium for the browser test) and runs the tests
PY := .venv/bin/python
export ANNY_CACHE_DIR ?= $(HOME)/.cache/anny

.PHONY: install install-browser app demo test lint bench
install:
	bash scripts/install.sh

install-browser:
	bash scripts/install_browser.sh

app: install
	$(PY) -m app.main

demo: install
	$(PY) -m app.cli image assets/examples/lunge.jpg --out out/lunge
	@echo "open out/lunge/overlay.png, or: .venv/bin/rerun out/lunge/result.rrd"

test: install install-browser
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) -m bench.bench_image
	$(PY) -m bench.accuracy_multiview --methods mediapipe_world,hmr_embedded --true-focal
