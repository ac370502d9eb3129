#include "model_testing.h"

#include "toyllm/graph.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace toyllm::testing {

namespace {

Tensor * i32_input(Context & ctx, const std::vector<int32_t> & v, const char * name) {
    Tensor * t = ctx.new_tensor(DType::I32, {static_cast<int64_t>(v.size())}, name);
    ctx.alloc(t);
    t->flags |= TENSOR_INPUT;
    std::copy(v.begin(), v.end(), t->data_as<int32_t>());
    return t;
}

std::vector<int32_t> iota_from(int64_t start, size_t n) {
    std::vector<int32_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>(start + static_cast<int64_t>(i));
    return v;
}

}  // namespace

nlohmann::json read_json(const std::filesystem::path & p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

std::string shell_quoted(const std::string & text) {
    std::string q = "'";
    for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::vector<float> prompt_logits(const Model & m, const std::vector<int32_t> & ids, int n_threads) {
    Context ctx;
    ForwardInputs in{.tokens = i32_input(ctx, ids, "tokens"), .positions = i32_input(ctx, iota_from(0, ids.size()), "pos")};
    Tensor * logits = m.forward(ctx, in);
    Graph g;
    g.build_forward(logits);
    make_backend("cpu", {.n_threads = n_threads})->compute(g);
    return {logits->data_as<float>(), logits->data_as<float>() + logits->n_elements()};
}

int32_t argmax(const float * x, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; ++i) {
        if (x[i] > x[best]) best = static_cast<int32_t>(i);
    }
    return best;
}

std::vector<int32_t> greedy(Model & m, const std::vector<int32_t> & prompt, size_t n_new, std::string_view device) {
    KvCache cache = m.make_cache(512, 1);
    auto backend = make_backend(device, {.n_threads = 1});
    std::vector<int32_t> out;
    std::vector<int32_t> next = prompt;
    while (out.size() < n_new) {
        Context ctx;
        ForwardInputs in{.tokens = i32_input(ctx, next, "tokens"),
                         .positions = i32_input(ctx, iota_from(cache.n_past, next.size()), "pos"),
                         .cache = &cache,
                         .logits_last_only = true};
        Tensor * logits = m.forward(ctx, in);
        Graph g;
        g.build_forward(logits);
        backend->compute(g);
        cache.n_past += static_cast<int64_t>(next.size());
        const int32_t id = argmax(logits->data_as<float>(), m.config().n_vocab);
        out.push_back(id);
        next = {id};
    }
    return out;
}

double llama2c_logit_error(const Model & m, const nlohmann::json & ref, int n_threads) {
    const nlohmann::json & r = ref["logits_once_upon_a_time"];
    const auto ids = r["tokens_in"].get<std::vector<int32_t>>();
    const auto logits = prompt_logits(m, ids, n_threads);
    const int64_t V = m.config().n_vocab;
    double max_err = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        const auto want = r["logits"][t].get<std::vector<float>>();
        EXPECT_EQ(static_cast<int64_t>(want.size()), V);
        if (static_cast<int64_t>(want.size()) != V) return INFINITY;
        for (int64_t i = 0; i < V; ++i) max_err = std::max(max_err, std::abs(static_cast<double>(logits[t * V + i]) - want[i]));
        EXPECT_EQ(argmax(&logits[t * V], V), r["logits_argmax"][t].get<int32_t>()) << "position " << t;
    }
    return max_err;
}

void expect_llama2c_greedy(Model & m, const nlohmann::json & ref) {
    for (const auto & [name, c] : ref["cases"].items()) {
        const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
        const auto want = c["generated_ids"].get<std::vector<int32_t>>();
        const auto got = greedy(m, prompt, want.size());
        size_t n_equal = 0;
        while (n_equal < got.size() && got[n_equal] == want[n_equal]) ++n_equal;
        std::printf("greedy case %s: %zu/%zu tokens equal to run.c's\n", name.c_str(), n_equal, want.size());
        EXPECT_EQ(got, want) << "case " << name << " prompt " << c["prompt"];
    }
}

std::vector<CliRun> expect_llama2c_cli_generate(const std::filesystem::path & model, const nlohmann::json & ref) {
    std::vector<CliRun> runs;
    for (const auto & [name, c] : ref["cases"].items()) {
        // run.c ran 200 positions; the prompt's tokens after the first are forced.
        const size_t n = 201 - c["prompt_ids"].size();
        const std::string base = "generate -m " + model.string() + " -p " + shell_quoted(c["prompt"].get<std::string>()) + " -n " +
                                 std::to_string(n) + " --temp 0 --ctx 512 --threads 1";
        const CliRun text = run_toyllm(base);
        EXPECT_EQ(text.status, 0) << text.err;
        EXPECT_EQ(text.out, c["stdout"].get<std::string>()) << "case " << name;
        const CliRun ids = run_toyllm(base + " --ids");
        std::vector<int32_t> got;
        std::istringstream ss(ids.out);
        for (int32_t id; ss >> id;) got.push_back(id);
        EXPECT_EQ(got, c["generated_ids"].get<std::vector<int32_t>>()) << "case " << name;
        runs.push_back(text);
    }
    return runs;
}

}  // namespace toyllm::testing
