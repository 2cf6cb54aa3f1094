# The two commands a newcomer needs are `make demo` and `make test`; both bootstrap what they need.
SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
# The static security scan has its own venv: checkov pins versions that clash with the project's.
SCAN_VENV := .venv-scan
CHECKOV := $(SCAN_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30

.PHONY: demo test unit lint typecheck template-check scan build bench clean

$(BIN)/ami-lifecycle: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)

$(CHECKOV):
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

## The main job, on an embedded local AWS (a moto server on loopback): seed a fleet, run the real flow.
demo: $(BIN)/ami-lifecycle
	$(BIN)/ami-lifecycle demo

## Everything CI checks: lint, types, the template (cfn-lint, sam validate, sam build), the security
## scan (checkov), and the tests (the fault-injection suite, tests/faults, included).
test: lint typecheck template-check scan unit

unit: $(BIN)/ami-lifecycle
	$(BIN)/pytest -q -n 2

## ruff (domain/ has its own banned-API rules: no clock, no environment, no AWS SDK) and
## import-linter (pyproject.toml: domain is pure, layers import downwards, no import cycles).
lint: $(BIN)/ami-lifecycle
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(BIN)/ami-lifecycle
	$(BIN)/mypy

## cfn-lint (through sam validate --lint) on the SAM template, cfn-lint on spoke.yaml (plain
## CloudFormation, checked in every region a StackSet may deploy it to), then a build of every
## function and the layer.
template-check: $(SAM)
	$(SAM) validate --lint --region us-east-1
	$(SAM_VENV)/bin/cfn-lint --regions us-east-1 us-west-2 eu-west-1 ap-southeast-2 -- spoke.yaml
	$(SAM) build --region us-east-1

## checkov on template.yaml and spoke.yaml, offline. Suppressions are justified in .checkov.yaml
## (global) and in the templates (Metadata: checkov: skip, per resource).
scan: $(CHECKOV)
	$(CHECKOV) --config-file .checkov.yaml

bench: $(BIN)/ami-lifecycle
	$(BIN)/python bench/run.py

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
