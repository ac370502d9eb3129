// `toyllm info` and `toyllm demo` as a user runs them: exit codes, text, JSON.
#include "testing.h"

#include "toyllm/gguf.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>

namespace {

using toyllm::testing::CliRun;
using toyllm::testing::run_toyllm;

TEST(CliInfo, JsonListsTheSameTensorsAsTheReader) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K-q4_0.gguf");
    const CliRun r = run_toyllm("info --json --max-array 2 " + path.string());
    ASSERT_EQ(r.status, 0) << r.both;
    const auto j = nlohmann::json::parse(r.both);
    const toyllm::GgufFile f = toyllm::GgufFile::open(path.string());
    ASSERT_EQ(j["tensors"].size(), f.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const auto & t = f.tensors()[i];
        EXPECT_EQ(j["tensors"][i]["name"], std::string(t.name));
        EXPECT_EQ(j["tensors"][i]["type"], std::string(toyllm::dtype_name(t.type)));
        EXPECT_EQ(j["tensors"][i]["offset"], f.data_offset() + t.offset);
        EXPECT_EQ(j["tensors"][i]["bytes"], t.n_bytes);
    }
    EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["count"], 512);
    EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["value"].size(), 2u);  // abbreviated
    EXPECT_EQ(j["metadata"]["general.architecture"]["value"], "llama");
}

TEST(CliInfo, TextShowsKeysAndAbbreviatedArrays) {
    TOYLLM_REQUIRE_SHARED(path, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    const CliRun r = run_toyllm("info " + path.string());
    ASSERT_EQ(r.status, 0) << r.both;
    EXPECT_NE(r.both.find("tokenizer.ggml.model = \"llama\""), std::string::npos) << r.both;
    EXPECT_NE(r.both.find("... (32000 total)]"), std::string::npos) << r.both;
    EXPECT_NE(r.both.find("* 0 tensors"), std::string::npos) << r.both;
}

TEST(CliInfo, ErrorsExitNonZeroWithOneClearLine) {
    toyllm::testing::TempDir tmp;
    const auto missing = tmp / "missing.gguf";
    CliRun r = run_toyllm("info " + missing.string());
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.both.find("cannot open " + missing.string() + ": No such file or directory"), std::string::npos) << r.both;

    r = run_toyllm("info --bogus x");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("unknown option --bogus"), std::string::npos) << r.both;

    r = run_toyllm("info");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("expected 1 argument"), std::string::npos) << r.both;

    r = run_toyllm("info --max-array lots x.gguf");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("--max-array expects an integer"), std::string::npos) << r.both;

    r = run_toyllm("no-such-command");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("unknown command"), std::string::npos) << r.both;

    r = run_toyllm("info --help");
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.both.find("usage: toyllm info"), std::string::npos) << r.both;
}

TEST(CliDemo, TrainsSavesSamplesAndPrintsTapStatistics) {
    toyllm::testing::TempDir tmp;
    const std::string corpus = (tmp / "text.txt").string();
    {
        std::string text;
        for (int i = 0; i < 400; ++i) text += "the cat sat on the mat and the dog sat on the log. ";
        std::FILE * f = std::fopen(corpus.c_str(), "w");
        std::fputs(text.c_str(), f);
        std::fclose(f);
    }
    const CliRun r = run_toyllm("demo -o " + tmp.path().string() + " --data " + corpus + " --steps 10 --threads 2");  // short: ASan runs it too
    ASSERT_EQ(r.status, 0) << r.both;
    const toyllm::GgufFile f = toyllm::GgufFile::open((tmp / "demo.gguf").string());
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.tensors().size(), 2u + 9u * f.get_u32("llama.block_count"));
    for (const char * s : {"step   10", "validation loss", "sample", "blk.0.resid_post", "blk.3.resid_post"}) {
        EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
    }
    EXPECT_TRUE(std::filesystem::exists(tmp / "run" / "metrics.jsonl"));
    // A second demo in the same directory replaces its run instead of refusing.
    EXPECT_EQ(run_toyllm("demo -o " + tmp.path().string() + " --data " + corpus + " --steps 2 --threads 2").status, 0);
    const CliRun missing = run_toyllm("demo -o " + tmp.path().string() + " --data " + (tmp / "nothing").string());
    EXPECT_NE(missing.status, 0);
    EXPECT_NE(missing.err.find("--data"), std::string::npos) << missing.err;
}

}  // namespace
