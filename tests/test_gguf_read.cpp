// Reading real GGUF files written by llama.cpp, checked against facts recorded outside
// this project: the vocab table of shared/SYSTEM.md (read from that file at run time).
#include "testing.h"

#include "toyllm/gguf.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace {

using toyllm::GgufFile;
using toyllm::GgufType;
namespace fs = std::filesystem;

struct VocabFacts {
    std::string model;                // tokenizer.ggml.model
    std::optional<std::string> pre;   // tokenizer.ggml.pre, absent in some files
    uint64_t n_tokens = 0;
    std::optional<uint64_t> n_merges;
};

std::string trim(const std::string & s) {
    const auto b = s.find_first_not_of(" \t");
    const auto e = s.find_last_not_of(" \t");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

uint64_t parse_count(std::string s) {
    std::erase(s, ',');
    return std::stoull(s);
}

// Rows of the table "The vocab files in testdata/vocab/" at the end of SYSTEM.md:
// | file | tokenizer.ggml.model | tokenizer.ggml.pre | tokens | merges | test vectors |
std::map<std::string, VocabFacts> read_vocab_table(const fs::path & system_md) {
    std::ifstream in(system_md);
    std::map<std::string, VocabFacts> out;
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("| ggml-vocab-", 0) != 0) continue;
        std::vector<std::string> cols;
        std::stringstream ss(line.substr(1));
        std::string col;
        while (std::getline(ss, col, '|')) cols.push_back(trim(col));
        if (cols.size() < 5) continue;
        VocabFacts f;
        f.model = cols[1].substr(0, cols[1].find(' '));
        if (cols[2] != "(absent)") f.pre = cols[2];
        f.n_tokens = parse_count(cols[3]);
        if (cols[4] != "–" && cols[4] != "-") f.n_merges = parse_count(cols[4]);
        out[cols[0]] = f;
    }
    return out;
}

TEST(GgufRead, VocabFilesMatchTheRecordedFacts) {
    TOYLLM_REQUIRE_SHARED(system_md, "SYSTEM.md");
    const auto table = read_vocab_table(system_md);
    ASSERT_EQ(table.size(), 12u) << "the vocab table of SYSTEM.md changed shape";

    const auto files = toyllm::testing::shared_files("testdata/vocab", ".gguf");
    ASSERT_EQ(files.size(), table.size());
    for (const fs::path & p : files) {
        SCOPED_TRACE(p.string());
        const auto it = table.find(p.filename().string());
        ASSERT_NE(it, table.end()) << "file not in the table";
        const VocabFacts & want = it->second;

        const GgufFile f = GgufFile::open(p.string());
        EXPECT_EQ(f.version(), 3u);
        EXPECT_TRUE(f.tensors().empty());
        EXPECT_EQ(f.get_string("tokenizer.ggml.model"), want.model);
        if (want.pre) {
            EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), *want.pre);
        } else {
            EXPECT_EQ(f.find("tokenizer.ggml.pre"), nullptr);
        }
        EXPECT_EQ(f.get_array("tokenizer.ggml.tokens", GgufType::STRING).count, want.n_tokens);
        if (want.n_merges) {
            EXPECT_EQ(f.get_array("tokenizer.ggml.merges", GgufType::STRING).count, *want.n_merges);
        } else {
            EXPECT_EQ(f.find("tokenizer.ggml.merges"), nullptr);
        }
    }
}

// llama.cpp lays tensors out back to back, each padded to the alignment, and pads the
// last one too: if our block sizes or the reader's offsets were wrong, the padded sizes
// would not add up to the data section that llama.cpp wrote.
TEST(GgufRead, ModelTensorsTileTheDataSection) {
    const auto files = toyllm::testing::shared_files("models/stories260K", ".gguf");
    ASSERT_EQ(files.size(), 3u);
    for (const fs::path & p : files) {
        SCOPED_TRACE(p.string());
        const GgufFile f = GgufFile::open(p.string());
        EXPECT_EQ(f.get_string("general.architecture"), "llama");
        EXPECT_EQ(f.get_u32("llama.embedding_length"), 64u);
        EXPECT_EQ(f.get_u32("llama.block_count"), 5u);
        ASSERT_FALSE(f.tensors().empty());
        uint64_t expect_offset = 0;
        for (const auto & t : f.tensors()) {
            EXPECT_EQ(t.offset, expect_offset) << t.name;
            expect_offset += (t.n_bytes + f.alignment() - 1) / f.alignment() * f.alignment();
        }
        EXPECT_EQ(f.data_offset() + expect_offset, f.bytes().size());
        EXPECT_EQ(f.data_offset() % f.alignment(), 0u);

        const auto & emb = f.get_tensor("token_embd.weight");
        EXPECT_EQ(emb.n_dims, 2u);
        EXPECT_EQ(emb.ne[0], 64);
        EXPECT_EQ(emb.ne[1], 512);
    }
}

// The F32 model's norm weights are real numbers from training: finite, and not all equal.
TEST(GgufRead, TensorDataIsAZeroCopyViewOfTheFile) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    const GgufFile f = GgufFile::open(path.string());
    const auto & t = f.get_tensor("blk.0.attn_norm.weight");
    EXPECT_EQ(t.type, toyllm::DType::F32);
    const auto data = f.tensor_data(t);
    ASSERT_EQ(data.size(), 64u * 4);
    EXPECT_EQ(data.data(), f.bytes().data() + f.data_offset() + t.offset);
    const auto file = toyllm::testing::read_file_bytes(path);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + static_cast<long>(f.data_offset() + t.offset)));
}

TEST(GgufRead, TypedGettersNameTheKeyOnError) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    const GgufFile f = GgufFile::open(path.string());
    try {
        (void)f.get_u32("llama.no_such_key");
        FAIL() << "no error";
    } catch (const toyllm::GgufError & e) {
        EXPECT_EQ(e.code(), toyllm::GgufErrc::MISSING_KEY);
        EXPECT_NE(std::string(e.what()).find("llama.no_such_key"), std::string::npos) << e.what();
    }
    try {
        (void)f.get_u32("general.architecture");
        FAIL() << "no error";
    } catch (const toyllm::GgufError & e) {
        EXPECT_EQ(e.code(), toyllm::GgufErrc::WRONG_KEY_TYPE);
        EXPECT_NE(std::string(e.what()).find("found str"), std::string::npos) << e.what();
    }
    try {
        (void)f.get_tensor("blk.99.attn_q.weight");
        FAIL() << "no error";
    } catch (const toyllm::GgufError & e) {
        EXPECT_EQ(e.code(), toyllm::GgufErrc::MISSING_TENSOR);
    }
    EXPECT_FLOAT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
    EXPECT_EQ(f.get_array("tokenizer.ggml.scores", GgufType::FLOAT32).count, 512u);
}

}  // namespace
