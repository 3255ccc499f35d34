// Process-wide settings that decide speed by integer factors (docs/PERFORMANCE.md):
// the allocator (keep freed memory instead of returning it to the kernel every step), the number
// of intra-op threads (libtorch starts with 1 on these machines), and the device.
#pragma once

#include <torch/torch.h>

#include <string>

namespace quantlab {

// OpenMP threads that spin after each parallel region take the second core from OpenBLAS's
// threads (measured: 25-40 % of an MLP step lost to spinning and sched_yield on 2 cores). libgomp
// reads OMP_WAIT_POLICY only at load time: the `quantlab` command (tools/quantlab_launcher.cpp)
// sets it before the program loads; when the program is started some other way and the
// environment does not set it, this re-runs the program (execv of /proc/self/exe, same argv) with
// OMP_WAIT_POLICY=PASSIVE, at the price of a second libtorch start-up. OpenBLAS picks its
// kernels once, at load time, from the CPU model, and falls back to its generic ones on models it
// does not know (this machine's Xeon: 55 instead of 277 GFLOP/s, an epoch of the demo 2-3x
// slower); when the environment does not set OPENBLAS_CORETYPE (nor QL_KEEP_OPENBLAS_CORETYPE),
// the same re-run sets it to blas_better_coretype(). One execv at most; call it first in main();
// on failure the program simply goes on as it is.
void reexec_with_runtime_environment(char** argv);

// Cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

// mallopt(M_MMAP_MAX, 0), mallopt(M_TRIM_THRESHOLD, 1 GiB); at::set_num_threads(threads or all cores).
void configure_runtime(int threads);

// When OpenBLAS runs its generic kernels on a CPU that has AVX2 or AVX-512 (it does not recognise
// every CPU model; measured: 55 GFLOP/s instead of 277, an MLP step 2-3x slower), a sentence saying
// so and naming the setting that fixes it (OPENBLAS_CORETYPE); "" otherwise. Changes nothing.
std::string blas_slow_path_note();

// The OPENBLAS_CORETYPE that gives this CPU OpenBLAS's fast kernels when the loaded OpenBLAS runs
// generic ones on a CPU with AVX-512 ("SkylakeX") or AVX2 ("Haswell"); "" otherwise (or no OpenBLAS).
std::string blas_better_coretype();

// When reexec_with_runtime_environment() chose OPENBLAS_CORETYPE: a sentence saying so and how to
// keep OpenBLAS's own choice; "" otherwise.
std::string blas_choice_note();

// Whether the libtorch this process runs has CUDA (its CUDA library is loaded), GPU or not.
bool libtorch_has_cuda();

// "" when a CUDA device is usable; otherwise which of the two is missing (a libtorch with CUDA,
// or a GPU this process can see) and what to do.
std::string cuda_unavailable_reason();

// "cpu", "cuda" or "auto" (CUDA when available). Throws Error for cuda without a GPU, with
// cuda_unavailable_reason().
torch::Device resolve_device(const std::string& name);

// --deterministic: libtorch's deterministic algorithms (an error where an operation has none),
// deterministic cuDNN without autotuning, cuBLAS's fixed workspace. Otherwise cuDNN's autotuning
// (benchmark mode) on CUDA. Call before the first GPU operation.
void configure_device_math(torch::Device device, bool deterministic);

}  // namespace quantlab
