# One command each for a fresh machine: `make run` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto

.PHONY: setup run report test unit bench sweep summarize html mutate clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-offline.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-offline.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# All five notebooks top to bottom, then report/report.pdf (PROFILE=auto|smollm2-aclsum|gpt2-cnndm|smoke).
run: setup
	$(PY) -m tools.run_notebooks --profile $(PROFILE)

# Figures and report/report.pdf rebuilt from the committed results/ (no training; under a minute). With
# PROFILE=smoke (or another profile) that profile's report, into results/<profile>/report/: the committed one is
# left alone. The same results make the same bytes, so a rebuild with nothing changed leaves git status clean.
report: setup
	$(PY) -m report.build --profile $(PROFILE)

# Unit tests, then the notebooks under nbval in the smoke profile.
test: setup
	PEFT_PROFILE=smoke $(PY) -m pytest tests notebooks --nbval -p no:cacheprovider

# Speed and memory of every method, ours against peft's (writes benchmarks/results/<device>.json).
bench: setup
	$(PY) benchmarks/bench.py

# Sweeps (SWEEP=tune|lora_rank|prompt_length|prompt_init|full_ft|seeds|methods, several allowed; only seeds reads the
# test split); resumable: kill it, run it again, it continues. Then `make report` adds them to the report.
# Hours on a 2-core CPU, minutes on a GPU (docs/sweeps.md).
SWEEP ?= tune lora_rank prompt_length prompt_init full_ft seeds
sweep: setup
	$(PY) -m tools.sweep --profile smollm2-aclsum --sweep $(SWEEP)

# The trained methods on your own text, without training: make summarize FILE=path/to/text.txt
summarize: setup
	@test -n "$(FILE)" || { echo "usage: make summarize FILE=path/to/text.txt"; exit 2; }
	$(PY) -m tools.summarize "$(FILE)"

# The five executed notebooks as HTML in html/ (not committed), to read without Jupyter.
html: setup
	mkdir -p html
	$(PY) -m jupyter nbconvert --to html --output-dir html notebooks/*.ipynb

# Mutation testing of the modules behind the reported numbers (pyproject.toml [tool.mutmut]); slow, not in CI.
# The score: mutants killed / all; `$(VENV)/bin/mutmut results` lists the survivors.
# One torch thread per mutant process: two processes of two spinning threads on 2 cores burn CPU time that mutmut's
# CPU-time limit then reads as a timeout.
mutate: setup
	PEFT_PROFILE=smoke OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut export-cicd-stats 2>/dev/null; cat mutants/mutmut-cicd-stats.json 2>/dev/null || true

unit: setup
	$(PY) -m pytest tests

clean:
	rm -rf results/smoke checkpoints/smoke
