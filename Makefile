# Two commands on a fresh machine:  make demo  (the main job)  and  make test.
# Each creates the virtual environment it needs and installs into it; a second
# run finds the stamp files newer than pyproject.toml and installs nothing.
PYTHON ?= python3
VENV   := .venv
TFLITE_VENV := .venv-tflite
PIP_FLAGS ?= --disable-pip-version-check --quiet
DATA ?=
PYTEST_ARGS ?=

.PHONY: test test-tf test-device demo install clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[train,dev]'
	touch $@

# The device side alone: no TensorFlow, tflite-runtime with numpy<2 (the stack of
# Coral's pycoral and older Raspberry Pi images). tflite-runtime 2.14 ships wheels
# for Python <= 3.11 only.
$(TFLITE_VENV)/.installed: pyproject.toml
	test -x $(TFLITE_VENV)/bin/python || $(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/pip install $(PIP_FLAGS) 'numpy<2' pillow h5py tifffile typer rich openslide-bin openslide-python imagecodecs 'tflite-runtime==2.14.*' pytest psutil hypothesis
	$(TFLITE_VENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

install: $(VENV)/.installed

test: test-tf test-device

test-tf: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Runs the runtime's tests where TensorFlow cannot be imported.
test-device: $(TFLITE_VENV)/.installed
	EDGE_PCAM_EXPECT_NO_TF=1 $(TFLITE_VENV)/bin/python -m pytest -m "not tf" tests/runtime $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/edge-pcam demo $(if $(DATA),--data $(DATA),)

clean:
	rm -rf $(VENV) $(TFLITE_VENV) runs

# The runtime on aarch64 under qemu user-mode emulation, compared with x86-64 (needs root;
# caches an arm64 Debian root in ~/.cache/edge-pcam). Report: benchmarks/results/arm64-emulated.md
.PHONY: arm-check
arm-check: $(VENV)/.installed $(TFLITE_VENV)/.installed
	bash devices/arm-emulation/run.sh

# The mutation score of the device side's decision code (mutmut; benchmarks/mutation.py says what and
# how). Not part of `make test`: 4 to 40 minutes on a shared 2-core machine, by its load. Writes
# benchmarks/results/mutation.md; mutants/ is mutmut's working copy (ignored by git).
MUTATION_WORKERS ?= 1
.PHONY: mutation
mutation: $(VENV)/.installed
	nice -n 10 $(VENV)/bin/python benchmarks/mutation.py --workers $(MUTATION_WORKERS)
