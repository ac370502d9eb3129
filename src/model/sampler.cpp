#include "toyllm/sampler.h"

#include "toyllm/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace toyllm {

Sampler::Sampler(const SamplerConfig & cfg) : cfg_(cfg), state_(cfg.seed) {
    if (cfg.top_k < 0) throw Error("sampler: top_k must be >= 0");
    if (!(cfg.top_p > 0.0f && cfg.top_p <= 1.0f)) throw Error("sampler: top_p must be in (0, 1]");
    if (!(cfg.min_p >= 0.0f && cfg.min_p <= 1.0f)) throw Error("sampler: min_p must be in [0, 1]");
    if (!(cfg.repeat_penalty > 0.0f)) throw Error("sampler: repeat_penalty must be > 0");
}

// splitmix64: tiny, fast and the same on every platform (std:: distributions are not).
double Sampler::uniform() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
}

void Sampler::accept(int32_t id) {
    recent_.push_back(id);
    while (static_cast<int32_t>(recent_.size()) > cfg_.penalty_last_n) recent_.pop_front();
}

int32_t Sampler::sample(std::span<const float> logits) {
    if (logits.empty()) throw Error("sampler: no logits");
    work_.assign(logits.begin(), logits.end());
    const bool penalize = cfg_.repeat_penalty != 1.0f || cfg_.frequency_penalty != 0.0f || cfg_.presence_penalty != 0.0f;
    if (penalize && !recent_.empty()) {
        std::unordered_map<int32_t, int> count;
        for (int32_t id : recent_) ++count[id];
        for (const auto & [id, n] : count) {
            if (id < 0 || static_cast<size_t>(id) >= work_.size()) continue;
            float & l = work_[static_cast<size_t>(id)];
            l = l > 0.0f ? l / cfg_.repeat_penalty : l * cfg_.repeat_penalty;
            l -= static_cast<float>(n) * cfg_.frequency_penalty + cfg_.presence_penalty;
        }
    }
    const auto best = std::max_element(work_.begin(), work_.end());
    if (cfg_.temperature <= 0.0f) return static_cast<int32_t>(best - work_.begin());

    // Candidates sorted by logit (ties by id, so the order is deterministic).
    std::vector<int32_t> ids(work_.size());
    std::iota(ids.begin(), ids.end(), 0);
    auto by_logit = [&](int32_t a, int32_t b) { return work_[a] != work_[b] ? work_[a] > work_[b] : a < b; };
    size_t n = ids.size();
    if (cfg_.top_k > 0 && static_cast<size_t>(cfg_.top_k) < n) {
        n = static_cast<size_t>(cfg_.top_k);
        std::partial_sort(ids.begin(), ids.begin() + static_cast<long>(n), ids.end(), by_logit);
    } else {
        std::sort(ids.begin(), ids.end(), by_logit);
    }
    // Probabilities at temperature 1 decide top-p and min-p (as llama.cpp's chain does).
    const float max_l = work_[ids[0]];
    std::vector<double> p(n);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += p[i] = std::exp(static_cast<double>(work_[ids[i]] - max_l));
    size_t keep = n;
    if (cfg_.top_p < 1.0f) {
        double acc = 0.0;
        for (size_t i = 0; i < n; ++i) {
            acc += p[i] / total;
            if (acc >= cfg_.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (cfg_.min_p > 0.0f) {
        size_t i = 1;
        while (i < keep && p[i] >= cfg_.min_p * p[0]) ++i;
        keep = i;
    }
    // Draw at the temperature among the kept candidates.
    double sum = 0.0;
    for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp(static_cast<double>(work_[ids[i]] - max_l) / cfg_.temperature);
    double r = uniform() * sum;
    for (size_t i = 0; i < keep; ++i) {
        r -= p[i];
        if (r < 0.0) return ids[i];
    }
    return ids[keep - 1];
}

}  // namespace toyllm
