// ggml type ids and block layouts, against the facts recorded in shared/SYSTEM.md
// ("Quant blocks: Q8_0 = 32 values in 34 bytes ...; Q4_0 = 32 in 18; ...").
#include "testing.h"

#include "toyllm/dtype.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

namespace {

using toyllm::DType;

TEST(DType, BlockLayoutsMatchTheRecordedFacts) {
    TOYLLM_REQUIRE_SHARED(system_md, "SYSTEM.md");
    std::ifstream in(system_md);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    for (char & c : text) {
        if (c == '\n') c = ' ';
    }
    // "Q8_0 = 32 values in 34 bytes" or "Q4_0 = 32 in 18"
    const std::regex fact(R"((Q\d_[0K]) = (\d+) (?:values )?in (\d+))");
    int n = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), fact); it != std::sregex_iterator(); ++it) {
        const auto t = toyllm::dtype_from_name((*it)[1].str());
        ASSERT_TRUE(t.has_value()) << (*it)[1];
        EXPECT_EQ(toyllm::dtype_info(*t).block_size, std::stoul((*it)[2])) << (*it)[0];
        EXPECT_EQ(toyllm::dtype_info(*t).type_size, std::stoul((*it)[3])) << (*it)[0];
        ++n;
    }
    EXPECT_EQ(n, 4);
}

TEST(DType, IdsAndNames) {
    EXPECT_EQ(static_cast<uint32_t>(DType::BF16), 30u);
    EXPECT_EQ(toyllm::dtype_from_name("Q4_K"), DType::Q4_K);
    EXPECT_EQ(toyllm::dtype_from_name("bf16"), DType::BF16);
    EXPECT_FALSE(toyllm::dtype_from_name("q4_2").has_value());
    // Retired ids (Q4_2, Q4_3, the 4x4 repacks) and ids past the table are unknown.
    for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 0xFFFFFFFFu}) {
        EXPECT_FALSE(toyllm::dtype_info(id).has_value()) << id;
    }
    EXPECT_EQ(toyllm::dtype_row_bytes(DType::Q6_K, 512), 420u);
    EXPECT_EQ(toyllm::dtype_row_bytes(DType::F16, 3), 6u);
}

}  // namespace
