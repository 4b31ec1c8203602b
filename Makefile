# The two commands of the README, plus helpers. Each target creates or reuses
# the virtual environment (.venv) first.
PYTHON := .venv/bin/python

.PHONY: env demo test lint bench

env:
	bash .dev_scripts/setup_env.sh

demo: env
	$(PYTHON) tools/demo.py

test: env
	$(PYTHON) -m pytest tests

# OpenMMLab's flake8 / isort / yapf settings (setup.cfg); fails on a violation
LINT_PATHS := mmnm tools tests benchmarks configs .dev_scripts setup.py
lint: env
	.venv/bin/flake8 $(LINT_PATHS)
	.venv/bin/isort --check-only --diff $(LINT_PATHS)
	.venv/bin/yapf --diff --recursive $(LINT_PATHS)

bench: env
	$(PYTHON) benchmarks/bench_nm_mask.py
	$(PYTHON) benchmarks/bench_train_cost.py
	$(PYTHON) benchmarks/bench_sparse24_inference.py
	$(PYTHON) benchmarks/bench_cls_throughput.py
