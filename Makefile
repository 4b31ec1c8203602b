# The two commands of the README, plus helpers. Each target creates or reuses
# the virtual environment (.venv) first.
PYTHON := .venv/bin/python

.PHONY: env demo test bench

env:
	bash tools/setup_env.sh

demo: env
	$(PYTHON) tools/demo.py

test: env
	$(PYTHON) -m pytest tests

bench: env
	$(PYTHON) benchmarks/bench_nm_mask.py
	$(PYTHON) benchmarks/bench_train_step.py
	$(PYTHON) benchmarks/bench_2to4_inference.py
