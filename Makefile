# QuantLab's front door. On a fresh Debian 12 machine `make demo` and `make test` do everything
# they need (packages, build) by themselves.
#   make deps    install the Debian packages the project needs (apt-get; root or sudo)
#   make build   configure and build into build/ (binary: build/quantlab), against Debian's libtorch 1.13 (CPU)
#   make test    build and run the test suite (ctest); installs Debian's python3-torch and, in the
#                build's own virtual environment, TensorBoard, ONNX and ONNX Runtime from PyPI
#   make demo    train the ternary MLP with ANA on Fashion-MNIST and print its test accuracy
#   make bench   speed and memory against the Python equivalent, and the accuracy runs
#   make build TORCH=pip    against PyTorch 2.11 from PyPI (a CUDA 13.0 build; its libtorch, cuDNN,
#                NCCL) in build-pip/venv, QuantLab's CUDA kernels compiled by nvcc (docs/GPU.md);
#                `make test TORCH=pip` and `make bench TORCH=pip` likewise
#   make build TORCH=python   against the libtorch of an installed PyTorch (a GPU machine's), the
#                other packages from the system or from bundle/ (docs/GPU.md)
#   make check-style   what CI checks besides the tests: `make format` has nothing to change
#                (clang-format), and clang-tidy's checks (.clang-tidy) find nothing (tools/tidy.sh)
#   make bundle  download the Debian packages QuantLab needs besides libtorch (and Fashion-MNIST)
#                into bundle/, to copy to a machine without package access
JOBS ?= $(shell nproc)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Which libtorch: debian (Debian's libtorch-dev 1.13, CPU; the default), pip (PyTorch from PyPI in
# a virtual environment of the build folder) or python (the PyTorch of an installed PYTHON).
TORCH ?= debian
PYTHON ?= python3
# Each libtorch its own build folder: a folder configured against one keeps it in CMake's cache.
ifeq ($(TORCH),pip)
BUILD ?= build-pip
else ifeq ($(TORCH),python)
BUILD ?= build-python
else
BUILD ?= build
endif
# The build's virtual environment (PyPI's packages, never the system Python's) and the wheels it is
# made from, downloaded once and reused by every later build and fresh clone on this machine.
VENV := $(abspath $(BUILD))/venv
WHEELS ?= $(HOME)/.cache/quantlab/wheels
REQ_TORCH := tools/python/requirements-torch.txt
REQ_TOOLS := tools/python/requirements-tools.txt

DEB_COMMON := build-essential cmake libgloo-dev nlohmann-json3-dev libcli11-dev libturbojpeg0-dev libpng-dev \
              libgtest-dev zlib1g-dev libprotobuf-dev protobuf-compiler
DEB_BUILD := $(DEB_COMMON) libtorch-dev libopenblas0-pthread
DEB_DATA := dataset-fashion-mnist
# The tests that check QuantLab against the libtorch it is built on compare with Debian's PyTorch
# 1.13 (checkpoints read by torch.load, schedules, losses); python3-venv makes the tools' venv.
DEB_TEST := python3-torch python3-venv
DEB_STYLE := clang-format clang-tidy
DEB_BENCH := python3-torch python3-torchvision python3-pil python3-numpy time

# Building against the libtorch of an installed PyTorch: its CMake files, and the packages of
# bundle/ (if any) unpacked into $(BUILD)/prefix, which CMake searches first.
BUNDLE ?= bundle
BUNDLE_DEBS := nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libprotobuf-dev libprotobuf32 libprotoc32 \
               protobuf-compiler libturbojpeg0-dev libturbojpeg0 libpng-dev libpng16-16 zlib1g-dev zlib1g libgloo-dev \
               $(DEB_DATA)
ifeq ($(TORCH),python)
TORCH_CMAKE ?= $(shell $(PYTHON) -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
PY_TORCH := $(shell command -v $(PYTHON))
PREFIX := $(abspath $(BUILD)/prefix)
CMAKE_EXTRA = -DCMAKE_PREFIX_PATH="$(TORCH_CMAKE)" -DQL_EXTRA_PREFIX=$(PREFIX)/usr -DQL_PYTHON=$(PY_TORCH) -DQL_TOOLS_PYTHON=$(PY_TORCH)
DEPS_STAMP := $(BUILD)/.deps-python
TEST_STAMP :=
export LD_LIBRARY_PATH := $(PREFIX)/usr/lib/x86_64-linux-gnu:$(PREFIX)/lib/x86_64-linux-gnu:$(LD_LIBRARY_PATH)
else ifeq ($(TORCH),pip)
# Evaluated by the shell when the build runs, once the venv exists.
CMAKE_EXTRA = -DCMAKE_PREFIX_PATH="$$($(VENV)/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
              -DQL_PYTHON=$(VENV)/bin/python -DQL_TOOLS_PYTHON=$(VENV)/bin/python $(CUDA_ROOT_FLAG)
# Without nvcc (no CUDA toolkit): PyTorch's CMake files need a working CUDA compiler even only to
# link libtorch_cuda, so PyPI's compiler of the wheel's CUDA release goes into the venv
# (tools/cuda_from_wheels.sh) and QuantLab's CUDA kernels are built with it. NVCC=pip does so even
# where the machine has nvcc.
NVCC ?= auto
HAVE_NVCC := $(shell command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || [ -n "$$CUDACXX" ] && echo yes)
ifneq ($(NVCC)$(HAVE_NVCC),autoyes)
WHEEL_CUDA := $(abspath $(BUILD))/cuda
CUDA_ROOT_FLAG = -DCUDA_TOOLKIT_ROOT_DIR=$(WHEEL_CUDA) -DCUDAToolkit_ROOT=$(WHEEL_CUDA) -DCMAKE_CUDA_COMPILER=$(WHEEL_CUDA)/bin/nvcc
endif
DEPS_STAMP := $(BUILD)/.deps-pip
TEST_STAMP :=
else ifeq ($(TORCH),debian)
CMAKE_EXTRA = -DQL_PYTHON=/usr/bin/python3 -DQL_TOOLS_PYTHON=$(VENV)/bin/python
DEPS_STAMP := $(BUILD)/.deps
TEST_STAMP := $(BUILD)/.deps-test $(VENV)/.tools
else
$(error TORCH=$(TORCH): expected debian (the default), pip or python)
endif

.PHONY: deps deps-bench build test demo bench clean format check-format tidy check-style bundle

# Installs Debian packages that are missing: $(call apt,WHAT,PACKAGES)
apt = if ! dpkg -s $(2) >/dev/null 2>&1; then \
	  echo "make $(1): installing $(2)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(2); \
	fi

# A stamp per package set, so repeated `make test` does not call apt again.
$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@$(call apt,deps,$(DEB_BUILD) $(DEB_DATA))
	@touch $@

$(BUILD)/.deps-test: $(BUILD)/.deps
	@$(call apt,deps-test,$(DEB_TEST))
	@touch $@

$(BUILD)/.deps-bench: $(DEPS_STAMP)
	@$(call apt,deps-bench,$(DEB_BENCH))
	@touch $@

# TORCH=pip: Debian's packages without its libtorch, then PyTorch and the tools from PyPI.
$(BUILD)/.deps-pip: Makefile $(REQ_TORCH) $(REQ_TOOLS) tools/python/requirements-nvcc.txt $(BUILD)/.nvcc-$(NVCC)$(HAVE_NVCC)
	@mkdir -p $(BUILD)
	@$(call apt,deps,$(DEB_COMMON) $(DEB_DATA) python3-venv)
	@tools/python_env.sh $(VENV) $(WHEELS) $(REQ_TORCH) $(REQ_TOOLS)
	@$(VENV)/bin/python -c 'import torch; print("make: PyTorch", torch.__version__, "for CUDA", torch.version.cuda, "in $(VENV)")'
ifneq ($(NVCC)$(HAVE_NVCC),autoyes)
	@tools/python_env.sh $(VENV) $(WHEELS) $(REQ_TORCH) $(REQ_TOOLS) tools/python/requirements-nvcc.txt
	@tools/cuda_from_wheels.sh $(VENV) $(WHEEL_CUDA)
endif
	@touch $@

# Which nvcc the pip build uses (the machine's, or PyPI's with NVCC=pip): a change remakes .deps-pip.
$(BUILD)/.nvcc-%:
	@mkdir -p $(BUILD)
	@rm -f $(BUILD)/.nvcc-*
	@touch $@

# The tools' venv of the Debian build (TensorBoard, ONNX, ONNX Runtime for the tests).
$(VENV)/.tools: $(REQ_TOOLS) $(BUILD)/.deps-test
	@tools/python_env.sh $(VENV) $(WHEELS) $(REQ_TOOLS)
	@touch $@

# Made again when bundle/ gets packages (copied in after a first build without them).
$(BUILD)/.deps-python: $(wildcard $(BUNDLE)/*.deb)
	@test -n "$(TORCH_CMAKE)" && test -d "$(TORCH_CMAKE)" || { \
	  echo "make build TORCH=python: $(PYTHON) has no torch with CMake files ($(PYTHON) -c 'import torch; print(torch.utils.cmake_prefix_path)')"; exit 1; }
	@mkdir -p $(PREFIX)
	@tools/unpack_bundle.sh $(BUNDLE) $(PREFIX)
	@touch $@

deps: $(DEPS_STAMP)
deps-bench: $(BUILD)/.deps-bench

build: $(DEPS_STAMP)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DQL_BUILD_TESTS=ON -DQL_BUILD_BENCH=ON $(CMAKE_EXTRA)
	cmake --build $(BUILD) -j $(JOBS)

bundle:
	mkdir -p $(BUNDLE)
	cd $(BUNDLE) && apt-get download $(BUNDLE_DEBS)
	@echo "bundle/: $$(ls $(BUNDLE)/*.deb | wc -l) packages; copy the folder to the GPU machine and run make build TORCH=python there"

test: build $(TEST_STAMP)
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure

demo: build
	$(BUILD)/quantlab --problem=FashionMNIST --topology=MLP

ifeq ($(TORCH),pip)
bench: build $(BUILD)/.deps-bench
	QL_BENCH_PYTHON=$(VENV)/bin/python bench/run_all.sh $(BUILD)
else
bench: build $(BUILD)/.deps-bench $(VENV)/.tools
	QL_TOOLS_PYTHON=$(VENV)/bin/python bench/run_all.sh $(BUILD)
endif

# Formats every C++ and CUDA file with .clang-format (Debian's clang-format).
format:
	clang-format -i $$(git ls-files '*.cpp' '*.h' '*.cu')

$(BUILD)/.deps-style: $(DEPS_STAMP)
	@$(call apt,deps-style,$(DEB_STYLE))
	@touch $@

# Fails, naming the files, when `make format` would change anything.
check-format: $(BUILD)/.deps-style
	clang-format --dry-run -Werror $$(git ls-files '*.cpp' '*.h' '*.cu')

# clang-tidy's checks (.clang-tidy) on src/ and tools/, with the flags of $(BUILD).
tidy: build $(BUILD)/.deps-style
	tools/tidy.sh $(BUILD)

check-style: check-format tidy

clean:
	rm -rf $(BUILD)
