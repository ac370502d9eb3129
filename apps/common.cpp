#include "common.h"

#include "toyllm/convert.h"

#include <cstdio>
#include <thread>

namespace toyllm::cli {

std::vector<OptionSpec> with_common_options(std::vector<OptionSpec> specific) {
    const unsigned hw = std::thread::hardware_concurrency();
    specific.push_back({"--ctx", "N", "context length (default: the model's context_length)"});
    specific.push_back({"--threads", "N", "CPU threads (default: " + std::to_string(hw == 0 ? 1 : hw) + ", the cores available)"});
    specific.push_back({"--device", "D", "cpu or cuda (default cpu)"});
    specific.push_back({"--no-mmap", "", "read the model into memory (huge pages) instead of mapping it: slower start; faster F32/F16 decode where the weights are not packed (packed matrices, every type with AVX-512 VNNI, are in huge pages either way, and both copies stay in memory)"});
    specific.push_back({"--cache-type", "T", "KV cache type: f32 (default) or f16 (half the memory; cpu only; attention in llama.cpp's order)"});
    return specific;
}

std::unique_ptr<Model> load_model(const Args & args, const std::string & path) {
    return Model::load(path, !args.has("--no-mmap"));
}

SessionConfig session_config(const Args & args, const Model & model) {
    SessionConfig c;
    const unsigned hw = std::thread::hardware_concurrency();
    c.n_threads = args.get_int("--threads", hw == 0 ? 1 : static_cast<int>(hw));
    if (c.n_threads < 1) throw UsageError("--threads must be >= 1");
    c.n_ctx = args.get_int("--ctx", 0);
    if (c.n_ctx < 0) throw UsageError("--ctx must be >= 0");
    if (c.n_ctx > model.config().n_ctx_train) {
        std::fprintf(stderr, "warning: --ctx %lld is longer than the model's context_length %lld\n",
                     static_cast<long long>(c.n_ctx), static_cast<long long>(model.config().n_ctx_train));
    }
    c.device = args.get("--device").value_or("cpu");
    const std::string cache = args.get("--cache-type").value_or("f32");
    if (cache == "f16") c.cache_type = DType::F16;
    else if (cache != "f32") throw UsageError("--cache-type must be f32 or f16, not '" + cache + "'");
    return c;
}

std::vector<int32_t> parse_ids(const std::string & text) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] == ' ' || text[i] == ',' || text[i] == '\t' || text[i] == '\n') {
            ++i;
            continue;
        }
        size_t used = 0;
        long v = 0;
        try {
            v = std::stol(text.substr(i), &used);
        } catch (const std::exception &) {
            throw UsageError("--ids: '" + text.substr(i, 16) + "' is not a token id");
        }
        if (v < 0 || v > INT32_MAX) throw UsageError("--ids: " + std::to_string(v) + " is not a token id");
        ids.push_back(static_cast<int32_t>(v));
        i += used;
    }
    if (ids.empty()) throw UsageError("--ids: no token ids");
    return ids;
}

DType parse_weight_type(const std::string & what, const std::string & name) {
    const auto type = dtype_from_name(name);
    if (!type || !is_weight_storage_type(*type)) throw UsageError(what + " must be f32, f16, bf16, q8_0 or q4_0, not '" + name + "'");
    return *type;
}

}  // namespace toyllm::cli
