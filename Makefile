# Two commands for a fresh machine: `make demo` (imgcli's main job on the local cloud)
# and `make test` (ruff, mypy, pytest). Both create .venv and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# imgcli's main job on the local cloud: bootstrap (which starts the local cloud), upload
# the sample images, wait until they are indexed, list them. Safe to run again.
demo: $(STAMP)
	$(BIN)/imgcli bootstrap
	$(BIN)/imgcli upload --recursive --wait demo/images
	$(BIN)/imgcli list
	@echo
	@echo "Try next (or 'source .venv/bin/activate' first, then type just 'imgcli ...'):"
	@echo "  .venv/bin/imgcli show 'holiday/snow+ski.png' --preview   # its thumbnail, drawn in the terminal"
	@echo "  .venv/bin/imgcli url meadow.jpg --thumbnail 1024        # a link anyone can open for an hour"
	@echo "  .venv/bin/imgcli upload --recursive ~/Pictures --prefix mine/   # a folder of yours"
	@echo "  .venv/bin/imgcli list --json | head"
	@echo "  .venv/bin/imgcli local status      # endpoint and key; 'eval \"\$$(.venv/bin/imgcli local env)\"' for other AWS tools"
	@echo "  .venv/bin/imgcli local stop        # state is kept for the next start"

# imgcli against raw boto3 and the AWS CLI on a private local cloud (issue 6); writes
# benchmarks/RESULTS.md. Installs awscli into benchmarks/.venv-awscli on first use.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# What durability costs (issue 11): the same upload against the local cloud of the commit
# before the journal and against this tree, alternating (benchmarks/journal_cost.py).
JOURNAL_BEFORE ?= 19af3eb
.PHONY: bench-durability
bench-durability: $(STAMP)
	rm -rf .bench-before && mkdir .bench-before
	git archive $(JOURNAL_BEFORE) | tar -x -C .bench-before
	$(BIN)/python benchmarks/journal_cost.py --before .bench-before
	rm -rf .bench-before

# What thumbnails cost (issue 14): each image alone in a fresh process
# (benchmarks/thumbnail_cost.py), then through the local cloud's Lambda runtime, a fresh
# worker per image (benchmarks/thumbnail_local.py).
.PHONY: bench-thumbnails
bench-thumbnails: $(STAMP)
	$(BIN)/python benchmarks/thumbnail_cost.py
	$(BIN)/python benchmarks/thumbnail_local.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
