# Two commands do all set-up: `make demo` and `make test`. Both create .venv when missing
# and install the package editable with its test extras (re-installing when setup.cfg changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfexperts-installed

.PHONY: demo test install clean bench

# pip byte-compiles what it installs one file at a time (about half of a fresh install here);
# compileall does the same on every core.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m tfexperts.demo

# Two pytest-xdist workers (CI has 2 cores), each building the session fixtures once; a worker
# takes one test at a time (--maxschedchunk=1), the long ones first (tests/conftest.py).
TEST_WORKERS ?= 2
test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n $(TEST_WORKERS) --maxschedchunk=1 tests

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) bench/forward.py

clean:
	rm -rf $(VENV) build *.egg-info
