# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo needs only the runtime dependencies (no pytest, hypothesis, mypy, dask, zarr).
RUNTIME := $(VENV)/.installed-runtime
DEMO := build/demo
SIZE ?= 256MB
FUZZ_SECONDS ?= 600
SOAK_ITERATIONS ?= 500
ATTACK_ARGS ?=
LS := $(VENV)/bin/lstmshape

LINTED := lstmshape tests bench samples

.PHONY: demo test test-fast check lint bench bench-startup fuzz soak samples clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUNTIME)

$(RUNTIME): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

demo: $(RUNTIME)
	@mkdir -p $(DEMO)
	$(LS) inspect samples/post_padded.npy samples/pre_padded.npy samples/runs.h5
	$(LS) reduce samples/post_padded.npy --strategy last --lengths samples/post_lengths.npy -o $(DEMO)/last.npy --force
	$(LS) reduce samples/post_padded.npy --strategy last -o $(DEMO)/last-unmasked.npy --force
	$(LS) reduce samples/bidirectional.npy --strategy last --bidirectional --lengths samples/bidirectional_lengths.npy -o $(DEMO)/h_n.npy --force
	$(LS) pool samples/post_padded.npy --op avg --mask samples/post_mask.npy -o $(DEMO)/mean.npy --force
	$(LS) pool samples/pre_padded.npy --op max --pool-size 4 --padding same --lengths samples/pre_lengths.npy --pad-side pre --mask-out $(DEMO)/windows_mask.npy -o $(DEMO)/windows.h5:/pool/max --force
	$(LS) project samples/post_padded.npy --pca 4 --lengths samples/post_lengths.npy --save-basis $(DEMO)/basis.npz -o $(DEMO)/pca.npy --force
	$(LS) reshape samples/time_major.npy --layout tnf --to steps --drop-padding --lengths samples/time_major_lengths.npy --lengths-out $(DEMO)/packed_lengths.npy -o $(DEMO)/packed.npy --force
	$(LS) reshape samples/post_padded.npy --to steps --drop-padding --lengths samples/post_lengths.npy -o $(DEMO)/packed.h5:/steps --force
	$(LS) reshape $(DEMO)/packed.h5:/steps --to padded --timesteps 40 -o $(DEMO)/restored.npy --force
	$(LS) reduce samples/post_padded.npy --strategy mean --lengths samples/post_lengths.npy -o - | $(LS) inspect -

# Everything: tests/ and the package's doctests (testpaths in pyproject.toml).
test: $(STAMP)
	$(PY) -m pytest -q

# Skips the tests marked slow (real-process fuzz, soak, concurrency, crash safety, size
# bombs, the dask cluster).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Lint, format, types (the [tool.mypy] config; pending modules are followed silently) and
# the docstring examples.
check: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy lstmshape
	$(PY) -m pytest -q --doctest-modules lstmshape

lint: check

# make bench SIZE=4GB [BENCH_ARGS="--rss-size 8GB --save bench/RESULTS.md"]
bench: $(STAMP)
	$(PY) bench/bench_kernels.py
	$(PY) bench/run.py --size $(SIZE) $(BENCH_ARGS)

# Start-up only (issue #16: --help and inspect against `python -c "import numpy"`), best of
# 20 each, wall and CPU time, on a non-editable install; needs no large inputs.
bench-startup: $(STAMP)
	$(PY) bench/run.py --steps startup --size 1MB --no-cold $(BENCH_ARGS)

# The long safety runs (docs/safety.md): damaged inputs through every command for
# FUZZ_SECONDS (it prints how many cases it tried), the piped soak, then the attacks of
# issue #15 at full size (ATTACK_ARGS="--quick" for smaller files, fewer rounds).
fuzz: $(STAMP)
	$(PY) bench/fuzz.py --seconds $(FUZZ_SECONDS); found=$$?; \
	$(PY) bench/soak.py --iterations $(SOAK_ITERATIONS); soaked=$$?; \
	$(PY) bench/attacks.py $(ATTACK_ARGS) && exit $$(( found || soaked ))

soak: $(STAMP)
	$(PY) bench/soak.py --iterations $(SOAK_ITERATIONS)

samples: $(STAMP)
	$(PY) samples/make_samples.py

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
