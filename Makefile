# The two entry points of the README. Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin

.PHONY: demo test clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

# The AISHELL-1 recipe on the embedded mini corpus: data, tokenizer, training, averaging,
# decoding in four modes and CER.
demo: $(VENV)/.installed
	PATH="$(BIN):$$PATH" bash recipes/aishell1/run.sh --mini true --model mini --avg_num 5

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf recipes/aishell1/data_mini recipes/aishell1/download_mini recipes/aishell1/exp/mini_mini \
		recipes/librispeech/download_mini recipes/librispeech/exp_mini
