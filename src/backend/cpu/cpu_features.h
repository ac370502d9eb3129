// What the CPU we run on can do, detected once at run time (cpuid + xgetbv on x86).
// Kernels pick their implementation from this, never from compile-time macros, so one
// binary runs on AVX-512, AVX2-only and scalar-only machines.
//
// TOYLLM_SIMD=scalar|avx2|avx512 caps the level (tests use it to run every path on
// one machine; asking for more than the CPU has is an error).
#pragma once

namespace toyllm::cpu {

enum class SimdLevel { SCALAR = 0, AVX2 = 1, AVX512 = 2 };

struct CpuFeatures {
    bool avx2 = false;        // with FMA and F16C
    bool avx512 = false;      // F, BW, VL, DQ (Skylake-X and later)
    bool avx512_vnni = false;
    bool avx512_bf16 = false;
    SimdLevel level = SimdLevel::SCALAR;  // the level kernels use (after TOYLLM_SIMD)
};

const CpuFeatures & cpu_features();

// Re-reads TOYLLM_SIMD and returns the new features (tests that switch levels).
const CpuFeatures & reset_cpu_features_for_testing();

const char * simd_level_name(SimdLevel l);

}  // namespace toyllm::cpu
