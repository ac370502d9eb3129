// SIMD levels in tests: TOYLLM_SIMD set for a scope, and a body run once per level this
// CPU has (header-only: the test binaries that use it see src/).
#pragma once

#include "backend/cpu/cpu_features.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace toyllm::testing {

using toyllm::cpu::SimdLevel;

// Sets TOYLLM_SIMD for the lifetime of the object and re-reads the CPU features;
// restores the previous value (or its absence) afterwards.
class ScopedSimd {
  public:
    explicit ScopedSimd(const char * value) {
        if (const char * old = std::getenv("TOYLLM_SIMD")) old_ = old;
        if (value != nullptr) {
            setenv("TOYLLM_SIMD", value, 1);
        } else {
            unsetenv("TOYLLM_SIMD");
        }
    }
    ~ScopedSimd() {
        if (old_) {
            setenv("TOYLLM_SIMD", old_->c_str(), 1);
        } else {
            unsetenv("TOYLLM_SIMD");
        }
        toyllm::cpu::reset_cpu_features_for_testing();
    }
    ScopedSimd(const ScopedSimd &) = delete;
    ScopedSimd & operator=(const ScopedSimd &) = delete;

  private:
    std::optional<std::string> old_;
};

// Every level up to what this CPU supports.
inline std::vector<SimdLevel> available_levels() {
    ScopedSimd none(nullptr);
    const SimdLevel max = toyllm::cpu::reset_cpu_features_for_testing().level;
    std::vector<SimdLevel> v;
    for (int l = 0; l <= static_cast<int>(max); ++l) v.push_back(static_cast<SimdLevel>(l));
    return v;
}

// Runs body() once per available level with that level active.
template <class Body>
void for_each_level(const Body & body) {
    for (SimdLevel level : available_levels()) {
        const char * name = toyllm::cpu::simd_level_name(level);
        SCOPED_TRACE(std::string("simd ") + name);
        ScopedSimd s(name);
        ASSERT_EQ(toyllm::cpu::reset_cpu_features_for_testing().level, level);
        body(level);
    }
}

}  // namespace toyllm::testing
