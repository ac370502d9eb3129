// Time per op for TOYLLM_PROFILE=1: each backend times its nodes its own way (a host
// clock, CUDA events) and records them here; the table is printed when it is destroyed.
#pragma once

#include "toyllm/tensor.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace toyllm {

class OpProfile {
  public:
    // Whether TOYLLM_PROFILE asks for profiling (set and not "0").
    static bool requested();

    explicit OpProfile(std::string title) : title_(std::move(title)) {}
    ~OpProfile();

    // Adds one run of `node` (matmul split by its form and, for the weight-times-activation
    // form, by the weight's shape, with the rate its bytes were read at; in-place nodes apart).
    void record(const Tensor * node, double seconds);
    // Adds host wall-clock time to a phase of compute() (a device backend: uploads,
    // launches, the wait for the device); printed per compute after the table.
    void record_phase(const std::string & phase, double seconds);

  private:
    struct Row {
        double seconds = 0.0;
        int64_t elements = 0;  // output elements computed
        double weight_bytes = 0.0;  // matmul: bytes of a read (0: not a weight product)
        long calls = 0;
    };
    std::string title_;
    std::map<std::string, Row> rows_;
    std::vector<std::pair<std::string, Row>> phases_;  // in the order first recorded
};

}  // namespace toyllm
