// Choosing the next token from logits: penalties on recent tokens, then greedy or
// top-k / top-p / min-p filtering and a draw at a temperature, reproducible per seed.
// The order follows llama.cpp's default chain: penalties, top-k, top-p, min-p,
// temperature, draw.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace toyllm {

struct SamplerConfig {
    float temperature = 0.8f;        // 0 (or less): greedy argmax
    int32_t top_k = 40;              // keep the k most likely; 0 = off
    float top_p = 0.95f;             // keep the smallest set with this much probability; 1 = off
    float min_p = 0.05f;             // drop tokens below min_p * p(best); 0 = off
    float repeat_penalty = 1.0f;     // recent tokens: positive logits / this, negative * this; 1 = off
    float frequency_penalty = 0.0f;  // minus this times the token's count in the window
    float presence_penalty = 0.0f;   // minus this once if the token is in the window
    int32_t penalty_last_n = 64;     // window of recent tokens the penalties look at
    uint64_t seed = 0;               // same seed, same logits: same tokens
};

class Sampler {
  public:
    explicit Sampler(const SamplerConfig & cfg);

    // The next token for these logits (not added to the history: call accept()).
    int32_t sample(std::span<const float> logits);
    // Records a token (prompt or generated) for the penalties.
    void accept(int32_t id);

  private:
    double uniform();  // [0, 1), from a generator whose sequence is fixed by the seed

    SamplerConfig cfg_;
    uint64_t state_;
    std::deque<int32_t> recent_;
    std::vector<float> work_;
};

}  // namespace toyllm
