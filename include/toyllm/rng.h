// splitmix64 (Steele, Lea, Flood 2014): a small generator whose numbers depend only on
// the seed. Used wherever results must be reproducible across machines and standard
// libraries (std:: distributions are implementation-defined).
#pragma once

#include <cstdint>

namespace toyllm {

class Rng {
  public:
    explicit Rng(uint64_t seed) : s_(seed) {}

    uint64_t next() {
        uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
    uint64_t below(uint64_t n) { return next() % n; }  // bias < n / 2^64

    uint64_t state() const { return s_; }

  private:
    uint64_t s_;
};

}  // namespace toyllm
