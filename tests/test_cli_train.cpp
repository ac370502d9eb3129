// The training commands end to end: resume is bit-identical, exports load and generate,
// fine-tuning stories260K on new text lowers its validation loss (full and LoRA), plots
// are drawn, and every bad input is a one-line error.
#include "testing.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

namespace toyllm {
namespace {

using testing::CliRun;
using testing::run_toyllm;
using testing::TempDir;

// A small corpus unlike TinyStories: sentences about a lighthouse, in varied order.
std::string write_corpus(const TempDir & dir, int n_lines = 120) {
    const char * subjects[] = {"The keeper", "Old Marta", "The lighthouse keeper", "Her brother Tomas", "The young apprentice"};
    const char * verbs[] = {"polished the brass lamp", "climbed the spiral stairs", "wound the heavy clockwork",
                            "logged the passing ships", "trimmed the copper wick", "watched the grey storm"};
    const char * ends[] = {"before the fog rolled in.", "while the gulls cried.", "as the tide turned.", "long after midnight.",
                           "under the cold stars."};
    std::string text;
    for (int i = 0; i < n_lines; ++i) {
        text += std::string(subjects[(i * 7) % 5]) + " " + verbs[(i * 5 + i / 3) % 6] + " " + ends[(i * 3 + i / 5) % 5] + "\n";
    }
    const std::string path = (dir / "corpus.txt").string();
    std::ofstream(path) << text;
    return path;
}

std::string write_tiny_config(const TempDir & dir) {
    const std::string path = (dir / "tiny.json").string();
    std::ofstream(path) << R"({"arch": "llama", "n_embd": 32, "n_ff": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 2})";
    return path;
}

// step -> the "loss" field exactly as written (17 significant digits round-trip a float).
std::map<int64_t, std::string> losses(const std::filesystem::path & run_dir) {
    std::map<int64_t, std::string> out;
    std::ifstream in(run_dir / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);
        if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].dump();
    }
    return out;
}

std::vector<double> val_losses(const std::filesystem::path & run_dir) {
    std::vector<double> out;
    std::ifstream in(run_dir / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);
        if (j.contains("val_loss")) out.push_back(j["val_loss"].get<double>());
    }
    return out;
}

void expect_ok(const CliRun & r) { ASSERT_EQ(r.status, 0) << r.both; }

TEST(CliTrain, ResumedRunRepeatsTheUninterruptedLossesBitForBit) {
    TempDir dir;
    const std::string corpus = write_corpus(dir), config = write_tiny_config(dir);
    const std::string common = " --config " + config + " --data " + corpus +
                               " --steps 20 --ctx 32 --batch 4 --micro-batch 2 --lr 3e-3 --seed 3 --eval-every 5 --threads 2";
    expect_ok(run_toyllm("train" + common + " -o " + (dir / "full").string()));
    const CliRun stopped = run_toyllm("train" + common + " -o " + (dir / "split").string() + " --stop-at 10");
    expect_ok(stopped);
    EXPECT_NE(stopped.err.find("--resume"), std::string::npos) << stopped.err;
    EXPECT_TRUE(std::filesystem::exists(dir / "split" / "checkpoint-000010.gguf"));
    EXPECT_EQ(losses(dir / "split").size(), 10u);
    expect_ok(run_toyllm("train --resume " + (dir / "split").string()));

    const auto a = losses(dir / "full"), b = losses(dir / "split");
    ASSERT_EQ(a.size(), 20u);
    EXPECT_EQ(a, b);
    EXPECT_LT(std::stod(a.at(20)), std::stod(a.at(1)));
    EXPECT_EQ(val_losses(dir / "full"), val_losses(dir / "split"));
    std::printf("from scratch: loss %s at step 1, %s at step 20, identical after resume at 10\n", a.at(1).c_str(), a.at(20).c_str());

    // The run exports to a model that generates, and its loss curve plots.
    const std::string model = (dir / "model.gguf").string();
    expect_ok(run_toyllm("export " + (dir / "split").string() + " -o " + model));
    const CliRun gen = run_toyllm("generate -m " + model + " -p \"The keeper\" -n 12 --temp 0");
    expect_ok(gen);
    EXPECT_EQ(gen.out.rfind("The keeper", 0), 0u) << gen.out;
    const std::string q8 = (dir / "model-q8_0.gguf").string();
    expect_ok(run_toyllm("export " + (dir / "split").string() + " -o " + q8 + " --type q8_0"));
    const CliRun info = run_toyllm("info " + q8);
    expect_ok(info);
    EXPECT_NE(info.out.find("q8_0"), std::string::npos) << info.out;
    expect_ok(run_toyllm("generate -m " + q8 + " -p \"The keeper\" -n 12 --temp 0"));
    const std::string svg = (dir / "loss.svg").string();
    expect_ok(run_toyllm("plot " + (dir / "full").string() + " -o " + svg));
    const std::vector<uint8_t> bytes = testing::read_file_bytes(svg);
    const std::string s(bytes.begin(), bytes.end());
    EXPECT_NE(s.find("<polyline"), std::string::npos);
    EXPECT_NE(s.find("validation loss"), std::string::npos);
}

TEST(CliTrain, LoraResumeIsBitIdenticalToo) {
    TOYLLM_REQUIRE_SHARED(base, "models/stories260K/stories260K-q8_0.gguf");
    TempDir dir;
    const std::string corpus = write_corpus(dir);
    const std::string common = " --lora -m " + base.string() + " --data " + corpus + " --lora-rank 4 --lora-per-head-q" +
                               " --steps 8 --ctx 64 --batch 2 --seed 1 --threads 2";
    expect_ok(run_toyllm("finetune" + common + " -o " + (dir / "full").string()));
    expect_ok(run_toyllm("finetune" + common + " -o " + (dir / "split").string() + " --stop-at 3"));
    expect_ok(run_toyllm("finetune --resume " + (dir / "split").string()));
    EXPECT_EQ(losses(dir / "full"), losses(dir / "split"));
    EXPECT_EQ(losses(dir / "full").size(), 8u);
}

// Fine-tuning stories260K on text it has not seen lowers the validation loss on held-out
// sequences of that text; with a LoRA adapter too, and the adapter changes what
// `generate` writes.
TEST(CliTrain, FinetuningStoriesOnNewTextLowersItsValidationLoss) {
    TOYLLM_REQUIRE_SHARED(base, "models/stories260K/stories260K.gguf");
    TempDir dir;
    const std::string corpus = write_corpus(dir, 200);
    const std::string common = " -m " + base.string() + " --data " + corpus + " --steps 40 --ctx 64 --batch 4 --eval-every 40 --seed 2 --threads 2";
    expect_ok(run_toyllm("finetune" + common + " --lr 1e-3 -o " + (dir / "full").string()));
    expect_ok(run_toyllm("finetune --lora" + common + " --lr 3e-3 -o " + (dir / "lora").string()));
    const auto full = val_losses(dir / "full"), lora = val_losses(dir / "lora");
    ASSERT_EQ(full.size(), 2u);
    ASSERT_EQ(lora.size(), 2u);
    std::printf("validation loss: full fine-tune %.4f -> %.4f, LoRA %.4f -> %.4f\n", full[0], full[1], lora[0], lora[1]);
    EXPECT_LT(full[1], full[0] - 0.5);
    EXPECT_LT(lora[1], lora[0] - 0.5);

    const std::string adapter = (dir / "adapter.gguf").string();
    expect_ok(run_toyllm("export " + (dir / "lora").string() + " -o " + adapter));
    const std::string gen = "generate -m " + base.string() + " -p \"The keeper\" -n 24 --temp 0 --ctx 512";
    const CliRun plain = run_toyllm(gen), adapted = run_toyllm(gen + " --lora " + adapter);
    expect_ok(plain);
    expect_ok(adapted);
    std::printf("base:    %s\nadapter: %s\n", plain.out.c_str(), adapted.out.c_str());
    EXPECT_NE(plain.out, adapted.out);
    // The merged model writes what base + adapter writes.
    const std::string merged = (dir / "merged.gguf").string();
    expect_ok(run_toyllm("merge -m " + base.string() + " --lora " + adapter + " -o " + merged));
    const CliRun m = run_toyllm("generate -m " + merged + " -p \"The keeper\" -n 24 --temp 0 --ctx 512");
    expect_ok(m);
    EXPECT_EQ(m.out, adapted.out);
}

// One line on stderr, a non-zero status, and the line says what is wrong.
void expect_error(const std::string & args, const std::string & needle) {
    const CliRun r = run_toyllm(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << "\n" << r.err;
}

TEST(CliTrain, BadInputsAreOneLineErrors) {
    TempDir dir;
    const std::string corpus = write_corpus(dir), config = write_tiny_config(dir);
    const std::string run = (dir / "run").string();
    expect_error("train --config " + config + " -o " + run, "--data");
    expect_error("train --data " + corpus + " -o " + run, "--preset");
    expect_error("train --preset nosuch --data " + corpus + " -o " + run, "unknown preset");
    expect_error("train --config " + config + " --data " + corpus + " -o " + run + " --batch 4 --micro-batch 3", "--micro-batch");
    expect_error("train --config " + config + " --data " + (dir / "missing").string() + " -o " + run, "does not exist");
    expect_error("train --config " + config + " --data " + corpus + " -o " + run + " --ctx 100000", "too few");
    expect_error("train --config " + corpus + " --data " + corpus + " -o " + (dir / "run2").string(), "corpus.txt");
    expect_error("finetune -m " + config + " --data " + corpus + " -o " + (dir / "run3").string() + " --lora-rank 4", "--lora");
    expect_error("train --resume " + (dir / "nowhere").string(), "not a run directory");
    expect_error("export " + (dir / "nowhere").string() + " -o " + (dir / "x.gguf").string(), "not a run directory");
    expect_error("plot " + (dir / "nowhere").string() + " -o " + (dir / "x.svg").string(), "metrics.jsonl");
    // A run directory is never overwritten.
    expect_ok(run_toyllm("train --config " + config + " --data " + corpus + " -o " + run + " --steps 1 --ctx 16 --batch 1"));
    expect_error("train --config " + config + " --data " + corpus + " -o " + run + " --steps 1", "already holds a run");
}

TEST(CliTrain, HelpListsTheDocumentedFlags) {
    const CliRun r = run_toyllm("finetune --help");
    expect_ok(r);
    for (const char * flag : {"--steps", "--lr", "--warmup", "--ctx", "--batch", "--micro-batch", "--seed", "--eval-every", "--save-every",
                              "--threads", "--resume", "--lora", "--lora-rank", "--lora-alpha", "--lora-targets", "--lora-per-head-q"}) {
        EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
    }
}

}  // namespace
}  // namespace toyllm
