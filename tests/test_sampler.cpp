// Sampling rules on hand-made distributions whose outcome follows from the definitions.
#include "toyllm/error.h"
#include "toyllm/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace {

using toyllm::Sampler;
using toyllm::SamplerConfig;

std::vector<float> logits_of(const std::vector<double> & probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
    return l;
}

std::map<int32_t, int> histogram(Sampler & s, const std::vector<float> & l, int n) {
    std::map<int32_t, int> h;
    for (int i = 0; i < n; ++i) ++h[s.sample(l)];
    return h;
}

TEST(Sampler, GreedyIsArgmax) {
    Sampler s({.temperature = 0.0f});
    EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f}), 1);
}

TEST(Sampler, TemperatureOneDrawsFromTheSoftmax) {
    const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
    Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 7});
    const int n = 40000;
    const auto h = histogram(s, logits_of(probs), n);
    for (size_t i = 0; i < probs.size(); ++i) {
        const double got = h.count(static_cast<int32_t>(i)) ? h.at(static_cast<int32_t>(i)) / static_cast<double>(n) : 0.0;
        // 5 standard deviations of a binomial proportion
        EXPECT_NEAR(got, probs[i], 5 * std::sqrt(probs[i] * (1 - probs[i]) / n)) << i;
    }
}

TEST(Sampler, TopKTopPAndMinPKeepTheRightSets) {
    const auto l = logits_of({0.4, 0.3, 0.2, 0.06, 0.04});
    {
        Sampler s({.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .min_p = 0.0f, .seed = 1});
        const auto h = histogram(s, l, 2000);
        EXPECT_EQ(h.size(), 2u);  // only ids 0 and 1
        EXPECT_TRUE(h.count(0) && h.count(1));
    }
    {
        // 0.4 + 0.3 = 0.7 < 0.75 <= 0.9: top-p 0.75 keeps three tokens.
        Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.75f, .min_p = 0.0f, .seed = 2});
        const auto h = histogram(s, l, 3000);
        EXPECT_EQ(h.size(), 3u);
        EXPECT_FALSE(h.count(3) || h.count(4));
    }
    {
        // min-p 0.45: p >= 0.18 survives (0.4, 0.3, 0.2).
        Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.45f, .seed = 3});
        const auto h = histogram(s, l, 3000);
        EXPECT_EQ(h.size(), 3u);
    }
}

TEST(Sampler, SameSeedSameTokens) {
    const auto l = logits_of({0.25, 0.25, 0.25, 0.25});
    Sampler a({.temperature = 1.0f, .seed = 42}), b({.temperature = 1.0f, .seed = 42}), c({.temperature = 1.0f, .seed = 43});
    std::vector<int32_t> ta, tb, tc;
    for (int i = 0; i < 64; ++i) {
        ta.push_back(a.sample(l));
        tb.push_back(b.sample(l));
        tc.push_back(c.sample(l));
    }
    EXPECT_EQ(ta, tb);
    EXPECT_NE(ta, tc);
}

TEST(Sampler, PenaltiesFollowTheirFormulas) {
    // Token 0 (logit 2) and token 1 (logit -1) were seen; repeat penalty 2 halves the
    // positive one and doubles the negative one: 1.0 and -2.0, so greedy picks token 2
    // (logit 1.5) over token 0.
    Sampler s({.temperature = 0.0f, .repeat_penalty = 2.0f});
    s.accept(0);
    s.accept(1);
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, -1.0f, 1.5f}), 2);
    // Frequency 0.4 x 3 occurrences + presence 0.5 = 1.7 off token 0: 2.0 -> 0.3 < 0.5.
    Sampler f({.temperature = 0.0f, .frequency_penalty = 0.4f, .presence_penalty = 0.5f});
    for (int i = 0; i < 3; ++i) f.accept(0);
    EXPECT_EQ(f.sample(std::vector<float>{2.0f, 0.5f}), 1);
    // Outside the window the penalty is gone.
    Sampler w({.temperature = 0.0f, .repeat_penalty = 10.0f, .penalty_last_n = 1});
    w.accept(0);
    w.accept(1);
    EXPECT_EQ(w.sample(std::vector<float>{2.0f, 1.9f}), 0);
}

TEST(Sampler, RejectsBadSettings) {
    EXPECT_THROW(Sampler({.top_p = 0.0f}), toyllm::Error);
    EXPECT_THROW(Sampler({.min_p = 1.5f}), toyllm::Error);
    EXPECT_THROW(Sampler({.repeat_penalty = 0.0f}), toyllm::Error);
}

}  // namespace
