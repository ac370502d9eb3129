// Run-time CPU feature detection (cpuid + xgetbv on x86-64) and the TOYLLM_SIMD cap.
//
// SimdLevel::AVX512 needs AVX-512 F/BW/VL/DQ *and* VNNI (Ice Lake, Zen 4 and later):
// vec_dot_avx512.cpp is compiled with -mavx512vnni, so the compiler may emit VNNI
// instructions anywhere in it. Skylake-X (AVX-512 without VNNI) therefore runs the AVX2
// kernels. BF16 instructions are not needed by any kernel (the BF16 dot widens to F32).
#include "backend/cpu/cpu_features.h"

#include "toyllm/error.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define TOYLLM_CPUID 1
#endif

namespace toyllm::cpu {

namespace {

#if defined(TOYLLM_CPUID)
struct Regs {
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

Regs cpuid(uint32_t leaf, uint32_t subleaf) {
    Regs r;
    __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
    return r;
}

// XCR0: which register states the OS saves on a context switch. A CPU may have AVX-512
// while the OS (or hypervisor) does not enable its state; then using it faults.
uint64_t xgetbv0() {
    uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool bit(uint32_t reg, int b) { return (reg >> b) & 1u; }

CpuFeatures detect_hardware() {
    CpuFeatures f;
    const uint32_t max_leaf = cpuid(0, 0).eax;
    if (max_leaf < 7) return f;
    const Regs l1 = cpuid(1, 0);
    const bool osxsave = bit(l1.ecx, 27);
    if (!osxsave) return f;
    const uint64_t xcr0 = xgetbv0();
    const bool os_avx = (xcr0 & 0x6) == 0x6;             // XMM and YMM state
    const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM0-15 high, ZMM16-31
    const bool avx = bit(l1.ecx, 28), fma = bit(l1.ecx, 12), f16c = bit(l1.ecx, 29);
    const Regs l7 = cpuid(7, 0);
    const bool avx2 = bit(l7.ebx, 5);
    f.avx2 = os_avx && avx && fma && f16c && avx2;
    const bool avx512f = bit(l7.ebx, 16), avx512dq = bit(l7.ebx, 17);
    const bool avx512bw = bit(l7.ebx, 30), avx512vl = bit(l7.ebx, 31);
    f.avx512 = f.avx2 && os_avx512 && avx512f && avx512dq && avx512bw && avx512vl;
    f.avx512_vnni = f.avx512 && bit(l7.ecx, 11);
    if (l7.eax >= 1) f.avx512_bf16 = f.avx512 && bit(cpuid(7, 1).eax, 5);
    return f;
}
#else
CpuFeatures detect_hardware() { return {}; }
#endif

SimdLevel hardware_level(const CpuFeatures & f) {
    if (f.avx512 && f.avx512_vnni) return SimdLevel::AVX512;
    if (f.avx2) return SimdLevel::AVX2;
    return SimdLevel::SCALAR;
}

// The hardware bits with each possible level, built once; readers get a pointer to one
// of them, so switching levels (tests) never writes to an object another thread reads.
struct State {
    CpuFeatures by_level[3];
    SimdLevel max_level;
};

const State & state() {
    static const State s = [] {
        State st;
        const CpuFeatures hw = detect_hardware();
        for (int l = 0; l < 3; ++l) {
            st.by_level[l] = hw;
            st.by_level[l].level = static_cast<SimdLevel>(l);
        }
        st.max_level = hardware_level(hw);
        return st;
    }();
    return s;
}

std::atomic<const CpuFeatures *> g_current{nullptr};
std::mutex g_init_mu;

const CpuFeatures & select_from_env() {
    const State & s = state();
    SimdLevel level = s.max_level;
    const char * env = std::getenv("TOYLLM_SIMD");
    if (env != nullptr && *env != '\0') {
        const std::string v(env);
        SimdLevel want;
        if (v == "scalar") {
            want = SimdLevel::SCALAR;
        } else if (v == "avx2") {
            want = SimdLevel::AVX2;
        } else if (v == "avx512") {
            want = SimdLevel::AVX512;
        } else {
            throw Error("cpu: TOYLLM_SIMD='" + v + "' is not one of scalar, avx2, avx512");
        }
        if (want > s.max_level) {
            throw Error("cpu: TOYLLM_SIMD='" + v + "' asks for more than this CPU supports (" +
                        simd_level_name(s.max_level) + ")");
        }
        level = want;
    }
    const CpuFeatures * f = &s.by_level[static_cast<int>(level)];
    g_current.store(f, std::memory_order_release);
    return *f;
}

}  // namespace

const CpuFeatures & cpu_features() {
    if (const CpuFeatures * f = g_current.load(std::memory_order_acquire)) return *f;
    std::lock_guard<std::mutex> lock(g_init_mu);
    if (const CpuFeatures * f = g_current.load(std::memory_order_acquire)) return *f;
    return select_from_env();  // a bad TOYLLM_SIMD throws here, and again on the next call
}

const CpuFeatures & reset_cpu_features_for_testing() {
    std::lock_guard<std::mutex> lock(g_init_mu);
    g_current.store(nullptr, std::memory_order_release);
    return select_from_env();
}

const char * simd_level_name(SimdLevel l) {
    switch (l) {
        case SimdLevel::SCALAR: return "scalar";
        case SimdLevel::AVX2: return "avx2";
        case SimdLevel::AVX512: return "avx512";
    }
    return "unknown";
}

}  // namespace toyllm::cpu
