// Helpers for tests that run a model: the logits of a prompt, greedy decoding, and the
// checks against llama2.c's run.c on stories260K (testdata/stories260K/greedy_reference.json)
// that every route to that model (llama.cpp's GGUF, our own conversion) must pass.
#pragma once

#include "testing.h"

#include "toyllm/model.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace toyllm::testing {

nlohmann::json read_json(const std::filesystem::path & p);

// 'text' quoted for the shell.
std::string shell_quoted(const std::string & text);

// Logits [T * n_vocab] of a whole prompt in one forward (no cache).
std::vector<float> prompt_logits(const Model & m, const std::vector<int32_t> & ids, int n_threads);

int32_t argmax(const float * x, int64_t n);

// Greedy decoding with the KV cache: the prompt in one forward, then one token at a time,
// on `device` ("cpu" or "cuda").
std::vector<int32_t> greedy(Model & m, const std::vector<int32_t> & prompt, size_t n_new, std::string_view device = "cpu");

// Largest |logit - run.c's logit| over the positions of ref["logits_once_upon_a_time"];
// also expects the argmax of every position to be run.c's.
double llama2c_logit_error(const Model & m, const nlohmann::json & ref, int n_threads);

// Greedy ids of every case in ref["cases"] equal to run.c's (library path). Prints the
// number of equal tokens per case.
void expect_llama2c_greedy(Model & m, const nlohmann::json & ref);

// `toyllm generate --temp 0 --ctx 512` on every case: the printed text equals run.c's stdout
// and the --ids output run.c's ids. Returns the text runs (for checks of stderr).
std::vector<CliRun> expect_llama2c_cli_generate(const std::filesystem::path & model, const nlohmann::json & ref);

}  // namespace toyllm::testing
