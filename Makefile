# QuantLab's front door. On a fresh Debian 12 machine `make demo` and `make test` do everything
# they need (packages, build) by themselves.
#   make deps    install the Debian packages the project needs (apt-get; root or sudo)
#   make build   configure and build into build/ (binary: build/quantlab)
#   make test    build and run the test suite (ctest; installs python3-torch for the tests that compare with PyTorch)
#   make demo    train the ternary MLP with ANA on Fashion-MNIST and print its test accuracy
#   make bench   speed and memory against the Python equivalent, and the accuracy runs
#   make build TORCH=python   against the libtorch of the installed PyTorch (a CUDA build on a GPU
#                machine), the other packages from the system or from bundle/ (docs/GPU.md)
#   make bundle  download the Debian packages QuantLab needs besides libtorch (and Fashion-MNIST)
#                into bundle/, to copy to a machine without package access
JOBS ?= $(shell nproc)
BUILD ?= build
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEB_BUILD := build-essential cmake libtorch-dev libgloo-dev libopenblas0-pthread nlohmann-json3-dev libcli11-dev libturbojpeg0-dev libpng-dev \
             libgtest-dev zlib1g-dev libprotobuf-dev protobuf-compiler
DEB_DATA := dataset-fashion-mnist
# The tests that check QuantLab against PyTorch (checkpoints read by torch.load, lr schedules) and
# the ONNX checker need these.
DEB_TEST := python3-torch python3-onnx
DEB_BENCH := python3-torch python3-torchvision python3-pil python3-numpy python3-onnx time

# Building against the libtorch of an installed PyTorch: its CMake files, and the packages of
# bundle/ (if any) unpacked into $(BUILD)/prefix, which CMake searches first.
TORCH ?= debian
PYTHON ?= python3
BUNDLE ?= bundle
BUNDLE_DEBS := nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libprotobuf-dev libprotobuf32 libprotoc32 \
               protobuf-compiler libturbojpeg0-dev libturbojpeg0 libpng-dev libpng16-16 zlib1g-dev zlib1g libgloo-dev \
               $(DEB_DATA)
ifeq ($(TORCH),python)
TORCH_CMAKE ?= $(shell $(PYTHON) -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
PREFIX := $(abspath $(BUILD)/prefix)
CMAKE_EXTRA := -DCMAKE_PREFIX_PATH="$(TORCH_CMAKE)" -DQL_EXTRA_PREFIX=$(PREFIX)/usr
DEPS_STAMP := $(BUILD)/.deps-python
export LD_LIBRARY_PATH := $(PREFIX)/usr/lib/x86_64-linux-gnu:$(PREFIX)/lib/x86_64-linux-gnu:$(LD_LIBRARY_PATH)
else ifeq ($(TORCH),debian)
DEPS_STAMP := $(BUILD)/.deps
else
$(error TORCH=$(TORCH): expected debian (the default) or python)
endif

.PHONY: deps deps-bench build test demo bench clean format bundle

# A stamp per package set, so repeated `make test` does not call apt again.
$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@if ! dpkg -s $(DEB_BUILD) $(DEB_DATA) >/dev/null 2>&1; then \
	  echo "make deps: installing $(DEB_BUILD) $(DEB_DATA)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_BUILD) $(DEB_DATA); \
	fi
	@touch $@

$(BUILD)/.deps-test: $(BUILD)/.deps
	@if ! dpkg -s $(DEB_TEST) >/dev/null 2>&1; then \
	  echo "make deps-test: installing $(DEB_TEST)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_TEST); \
	fi
	@touch $@

$(BUILD)/.deps-bench: $(BUILD)/.deps
	@if ! dpkg -s $(DEB_BENCH) >/dev/null 2>&1; then \
	  echo "make deps-bench: installing $(DEB_BENCH)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_BENCH); \
	fi
	@touch $@

$(BUILD)/.deps-python:
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

ifeq ($(TORCH),python)
test: build
else
test: build $(BUILD)/.deps-test
endif
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure

demo: build
	$(BUILD)/quantlab --problem=FashionMNIST --topology=MLP

bench: build $(BUILD)/.deps-bench
	bench/run_all.sh $(BUILD)

# Formats every C++ and CUDA file with .clang-format (Debian's clang-format).
format:
	clang-format -i $$(git ls-files '*.cpp' '*.h' '*.cu')

clean:
	rm -rf $(BUILD)
