# Two entry points, each sets up .venv on first use:
#   make run   - the whole catalog into reports/latest/
#   make test  - the test suite (installs headless Chromium from Debian when run as root),
#                one pytest-xdist worker per core: `make test PYTEST_WORKERS=0` runs it in
#                one process; `pytest -m slow` runs the long fuzzing and packaging tests
PYTHON ?= python3
# at most 8 workers: each imports torch and jax, and some tests start process pools
PYTEST_WORKERS ?= auto
PYTEST_XDIST   := -n $(PYTEST_WORKERS) --maxprocesses=8 --dist worksteal
VENV   := .venv
# Python caches compiled modules (and pytest its assertion-rewritten tests) unless told not
# to; the test suite starts many interpreters, each of which would compile them again.
unexport PYTHONDONTWRITEBYTECODE
STAMP  := $(VENV)/.installed

.PHONY: run test browser clean

run: $(STAMP)
	$(VENV)/bin/gradcheck run cases/ --out reports/latest

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest $(PYTEST_XDIST)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The report's browser test drives Debian's Chromium; a test tool's own browser download
# does not work on machines without general internet access.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	  else echo "chromium/chromedriver missing: the browser test will be skipped"; fi; \
	fi

clean:
	rm -rf $(VENV) reports/latest
