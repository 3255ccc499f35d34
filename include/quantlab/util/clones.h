// Function attributes of the CPU kernels (the ANA operators, the fused optimizer step): a function
// marked QL_CLONES is compiled for AVX-512, AVX2 and baseline x86-64 and the loader picks one for
// the CPU (GCC target_clones); QL_INLINE forces a helper into its caller, so a helper called from a
// clone is compiled for the clone's instruction set. Only for translation units of the
// quantlab_kernels target (CMakeLists.txt), whose flags let GCC vectorise their loops.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QL_CLONES
#endif
#define QL_INLINE inline __attribute__((always_inline))
