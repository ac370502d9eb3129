// The model subcommands as a user runs them: generate against llama2.c's printed text,
// logits against its numbers, bench's report, and one clear error per bad input.
#include "backend/cpu/repack.h"
#include "model_testing.h"

#include "toyllm/gguf.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sys/wait.h>

namespace {

using toyllm::testing::CliRun;
using toyllm::testing::run_toyllm;

using nlohmann::json;
namespace fs = std::filesystem;

TEST(CliGenerate, GreedyTextAndIdsMatchLlama2c) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    for (const CliRun & r : toyllm::testing::expect_llama2c_cli_generate(model, toyllm::testing::read_json(ref_path))) {
        EXPECT_NE(r.err.find("longer than the model's context_length 128"), std::string::npos) << r.err;
    }
}

TEST(CliGenerate, SameSeedSameText) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    const std::string cmd = "generate -m " + model.string() + " -p 'Lily saw' -n 40 --seed 7 --threads 2";
    const CliRun a = run_toyllm(cmd), b = run_toyllm(cmd), c = run_toyllm(cmd + " --temp 1.5 --top-k 0 --top-p 1 --min-p 0");
    ASSERT_EQ(a.status, 0) << a.err;
    EXPECT_EQ(a.out, b.out);
    EXPECT_NE(a.out, c.out);
    EXPECT_EQ(a.out.rfind("Lily saw", 0), 0u) << a.out;
}

TEST(CliLogits, NpyHoldsTheReferenceLogits) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    std::ifstream in(ref_path);
    const json ref = json::parse(in)["logits_once_upon_a_time"];
    toyllm::testing::TempDir tmp;
    const fs::path out = tmp / "logits.npy";
    const CliRun r = run_toyllm("logits -m " + model.string() + " --ids '1 403 407' -o " + out.string());
    ASSERT_EQ(r.status, 0) << r.err;
    const auto bytes = toyllm::testing::read_file_bytes(out);
    ASSERT_GT(bytes.size(), 10u);
    ASSERT_EQ(std::memcmp(bytes.data(), "\x93NUMPY\x01\x00", 8), 0);
    const size_t header_len = bytes[8] | (bytes[9] << 8);
    const std::string header(bytes.begin() + 10, bytes.begin() + 10 + static_cast<long>(header_len));
    EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
    EXPECT_NE(header.find("'shape': (3, 512)"), std::string::npos) << header;
    EXPECT_EQ((10 + header_len) % 64, 0u);
    ASSERT_EQ(bytes.size(), 10 + header_len + 3 * 512 * 4);
    const auto * v = reinterpret_cast<const float *>(bytes.data() + 10 + header_len);
    double max_err = 0;
    for (size_t t = 0; t < 3; ++t) {
        const auto want = ref["logits"][t].get<std::vector<float>>();
        for (size_t i = 0; i < 512; ++i) max_err = std::max(max_err, std::abs(static_cast<double>(v[t * 512 + i]) - want[i]));
    }
    EXPECT_LT(max_err, 1e-4);
}

// --no-mmap reads the file into memory: the same logits to the bit, the same errors.
TEST(CliLogits, NoMmapGivesTheSameBytes) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K-q8_0.gguf");
    toyllm::testing::TempDir tmp;
    const std::string ids = " --ids '1 403 407 157 26 263' --threads 2 -o ";
    const CliRun mapped = run_toyllm("logits -m " + model.string() + ids + (tmp / "a.npy").string());
    const CliRun read = run_toyllm("logits --no-mmap -m " + model.string() + ids + (tmp / "b.npy").string());
    ASSERT_EQ(mapped.status, 0) << mapped.err;
    ASSERT_EQ(read.status, 0) << read.err;
    const auto a = toyllm::testing::read_file_bytes(tmp / "a.npy");
    EXPECT_GT(a.size(), 6u * 512 * 4);
    EXPECT_EQ(a, toyllm::testing::read_file_bytes(tmp / "b.npy"));
    const CliRun missing = run_toyllm("logits --no-mmap -m " + (tmp / "none.gguf").string() + " --ids 1");
    EXPECT_NE(missing.status, 0);
    EXPECT_NE(missing.err.find("none.gguf"), std::string::npos) << missing.err;
}

// --cache-type f16 keeps the KV cache in halves and attends in llama.cpp's order: the
// logits of llama.cpp's Q8_0 file equal its reference run's, every one of them.
TEST(CliLogits, F16CacheGivesLlamaCppsLogits) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K-q8_0.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/llamacpp_reference_q8_0.json");
    const json c = toyllm::testing::read_json(ref_path)["cases"][1];  // "The cat sat on the", 8 positions
    std::string ids;
    for (int id : c["prompt_ids"]) ids += std::to_string(id) + " ";
    toyllm::testing::TempDir tmp;
    const CliRun r = run_toyllm("logits --cache-type f16 -m " + model.string() + " --ids '" + ids + "' --threads 2 -o " + (tmp / "l.npy").string());
    ASSERT_EQ(r.status, 0) << r.err;
    const auto bytes = toyllm::testing::read_file_bytes(tmp / "l.npy");
    const size_t n_pos = c["prompt_ids"].size(), header = 10 + (bytes[8] | (bytes[9] << 8));
    ASSERT_EQ(bytes.size(), header + n_pos * 512 * 4);
    const auto * v = reinterpret_cast<const float *>(bytes.data() + header);
    double max_err = 0;
    for (size_t t = 0; t < n_pos; ++t) {
        const auto want = c["prompt_logits"][t].get<std::vector<float>>();
        for (size_t i = 0; i < 512; ++i) max_err = std::max(max_err, std::abs(static_cast<double>(v[t * 512 + i]) - want[i]));
    }
    EXPECT_LT(max_err, 1e-5);
}

TEST(CliBench, ReportsSpeedAndTheBound) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K-q8_0.gguf");
    const CliRun r = run_toyllm("bench -m " + model.string() + " -p 16 -n 8 -r 1 --threads 1 --json");
    ASSERT_EQ(r.status, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_GT(j["pp"]["tokens_per_s"].get<double>(), 0.0);
    EXPECT_GT(j["tg"]["tokens_per_s"].get<double>(), 0.0);
    EXPECT_GT(j["memory_bandwidth_gbps"].get<double>(), 0.0);
    EXPECT_GT(j["weights_read_gbps"].get<double>(), 0.0);  // the pass over the model's own weights
    // Q8_0 matrices of stories260K: 34 bytes per 32 weights, plus the f32 ffn_down and norms.
    EXPECT_GT(j["bytes_per_token"].get<double>(), 2e5);
    EXPECT_LT(j["bytes_per_token"].get<double>(), 5e5);
    // Its Q8_0 matrices (all but the f32 ffn_down) run packed where the CPU has the
    // kernels: a copy of about their size, less than a token reads.
    if (toyllm::cpu::packed_kernel_available(toyllm::DType::Q8_0)) {
        EXPECT_GT(j["packed_weight_bytes"].get<double>(), 1e5);
        EXPECT_LT(j["packed_weight_bytes"].get<double>(), j["bytes_per_token"].get<double>());
    } else {
        EXPECT_EQ(j["packed_weight_bytes"].get<double>(), 0.0);
    }
    ::setenv("TOYLLM_REPACK", "0", 1);
    const CliRun off = run_toyllm("bench -m " + model.string() + " -p 4 -n 4 -r 1 --threads 1 --json");
    ::unsetenv("TOYLLM_REPACK");
    ASSERT_EQ(off.status, 0) << off.err;
    EXPECT_EQ(json::parse(off.out)["packed_weight_bytes"].get<double>(), 0.0);
}

// -d D: pp and tg run after D tokens of context, reported in llama-bench's notation; a
// negative depth is a usage error.
TEST(CliBench, DepthFillsTheContextFirst) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K-q8_0.gguf");
    const CliRun r = run_toyllm("bench -m " + model.string() + " -p 4 -n 4 -d 20 -r 1 --threads 1");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("| pp4 @ d20 |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| tg4 @ d20 |"), std::string::npos) << r.out;
    const CliRun j = run_toyllm("bench -m " + model.string() + " -p 0 -n 4 -d 20 -r 1 --threads 1 --json");
    ASSERT_EQ(j.status, 0) << j.err;
    EXPECT_EQ(json::parse(j.out)["depth"].get<int>(), 20);
    const CliRun plain = run_toyllm("bench -m " + model.string() + " -p 0 -n 4 -r 1 --threads 1");
    EXPECT_NE(plain.out.find("| tg4 |"), std::string::npos) << plain.out;
    // The context is evaluated before each timed part: one batch more per round (the
    // warm-up and one repetition), each an attention call per layer (stories260K: 5).
    const auto attention_calls = [&](const std::string & extra) {
        ::setenv("TOYLLM_PROFILE", "1", 1);
        const CliRun p = run_toyllm("bench -m " + model.string() + " -p 0 -n 4 -r 1 --threads 1" + extra);
        ::unsetenv("TOYLLM_PROFILE");
        const size_t at = p.err.find("  attention ");
        if (at == std::string::npos) return -1L;
        const std::string line = p.err.substr(at, p.err.find('\n', at) - at);
        const size_t calls = line.find(" calls");
        const size_t start = line.rfind(' ', calls - 1);
        return std::stol(line.substr(start + 1, calls - start - 1));
    };
    EXPECT_EQ(attention_calls(" -d 20") - attention_calls(""), 2 * 5);
    const CliRun bad = run_toyllm("bench -m " + model.string() + " -d -1");
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.err.find("-d must be >= 0"), std::string::npos) << bad.err;
}

// TOYLLM_PROFILE=1: the time per op on stderr, weight products apart by the weight's
// type and shape (rows x columns), with the rate their bytes were read at.
TEST(CliBench, ProfileSplitsMatmulsByWeightShape) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K-q8_0.gguf");
    ::setenv("TOYLLM_PROFILE", "1", 1);
    const CliRun r = run_toyllm("bench -m " + model.string() + " -p 4 -n 4 -r 1 --threads 1");
    ::unsetenv("TOYLLM_PROFILE");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("cpu backend profile (1 threads)"), std::string::npos) << r.err;
    // stories260K: wq is 64 x 64, wk 32 x 64 (4 kv heads of 8), ffn_down (f32: 172 is no
    // multiple of 32) 64 x 172.
    for (const char * row : {"matmul (a q8_0 64 x 64)", "matmul (a q8_0 32 x 64)", "matmul (a f32 64 x 172)"}) {
        const size_t at = r.err.find(row);
        ASSERT_NE(at, std::string::npos) << row << " in:\n" << r.err;
        const std::string line = r.err.substr(at, r.err.find('\n', at) - at);
        EXPECT_NE(line.find("GB/s of weights"), std::string::npos) << line;
    }
    const size_t attn = r.err.find("  attention ");
    ASSERT_NE(attn, std::string::npos) << r.err;
    EXPECT_EQ(r.err.substr(attn, r.err.find('\n', attn) - attn).find("GB/s"), std::string::npos);
    const CliRun quiet = run_toyllm("bench -m " + model.string() + " -p 4 -n 4 -r 1 --threads 1");
    EXPECT_EQ(quiet.err.find("profile"), std::string::npos) << quiet.err;
}

// Our Q8_0 file of the f32 model holds the same tensors, bytes and types as llama.cpp's.
TEST(CliQuantize, Q8_0MatchesLlamaCppTensorForTensor) {
    TOYLLM_REQUIRE_SHARED(f32, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref, "models/stories260K/stories260K-q8_0.gguf");
    toyllm::testing::TempDir tmp;
    const fs::path out = tmp / "q8.gguf";
    const CliRun r = run_toyllm("quantize " + f32.string() + " " + out.string() + " q8_0");
    ASSERT_EQ(r.status, 0) << r.err;
    const toyllm::GgufFile ours = toyllm::GgufFile::open(out.string()), theirs = toyllm::GgufFile::open(ref.string());
    ASSERT_EQ(ours.tensors().size(), theirs.tensors().size());
    for (const auto & t : theirs.tensors()) {
        const auto & o = ours.get_tensor(t.name);
        EXPECT_EQ(o.type, t.type) << t.name;
        const auto a = ours.tensor_data(o), b = theirs.tensor_data(t);
        EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << t.name;
    }
    EXPECT_EQ(ours.get_u32("general.file_type"), theirs.get_u32("general.file_type"));
    const CliRun bad = run_toyllm("quantize " + f32.string() + " " + out.string() + " q3_k");
    EXPECT_EQ(bad.status, 2);
    EXPECT_NE(bad.err.find("TYPE must be"), std::string::npos) << bad.err;
}

// Each bad input: exit status 1 and a one-line message that names the problem.
void expect_error(const std::string & args, const std::string & needle) {
    const CliRun r = run_toyllm(args);
    EXPECT_EQ(r.status == 1 || r.status == 2, true) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(CliModel, BadInputsAreOneLineErrors) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    toyllm::testing::TempDir tmp;
    const auto original = toyllm::testing::read_file_bytes(model);

    const fs::path truncated = tmp / "truncated.gguf";
    std::ofstream(truncated, std::ios::binary).write(reinterpret_cast<const char *>(original.data()), 100000);
    expect_error("generate -m " + truncated.string() + " -p hi", "past the end of the file");

    const toyllm::GgufFile f = toyllm::GgufFile::open(model.string());
    {
        toyllm::GgufWriter w = toyllm::GgufWriter::copy_of(f);
        w.set_string("general.architecture", "mamba");
        w.write((tmp / "arch.gguf").string());
        expect_error("generate -m " + (tmp / "arch.gguf").string() + " -p hi", "architecture 'mamba' is not supported");
    }
    {
        toyllm::GgufWriter w = toyllm::GgufWriter::copy_of(f);
        w.set_u32("llama.embedding_length", 96);
        w.write((tmp / "shape.gguf").string());
        expect_error("logits -m " + (tmp / "shape.gguf").string() + " --ids 1", "has shape [64, 512], expected [96, 512]");
    }
    expect_error("generate -m " + model.string() + " -p 'Once upon a time there was a girl' --ctx 4", "more than the context of 4");
    expect_error("logits -m " + model.string() + " --ids '1 512'", "512 is outside the vocabulary of 512");
    expect_error("logits -m " + model.string() + " --ids '1 x'", "'x' is not a token id");
    expect_error("generate -m " + (tmp / "missing.gguf").string() + " -p hi", "No such file or directory");
    expect_error("generate -m " + model.string(), "-p TEXT is required");
    expect_error("logits --cache-type q8_0 -m " + model.string() + " --ids 1", "--cache-type must be f32 or f16, not 'q8_0'");
    expect_error("logits --cache-type f16 --device cuda -m " + model.string() + " --ids 1", "f16 KV cache runs on the cpu device only");
}

}  // namespace
