#include "toyllm/dataset.h"

#include "toyllm/rng.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace toyllm {

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> text_files(const std::string & path) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw Error("data: '" + path + "' does not exist");
    std::vector<fs::path> files;
    if (fs::is_regular_file(st)) {
        files.emplace_back(path);
    } else if (fs::is_directory(st)) {
        for (const auto & e : fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied)) {
            if (e.is_regular_file()) files.push_back(e.path());
        }
        std::sort(files.begin(), files.end());
    } else {
        throw Error("data: '" + path + "' is neither a file nor a directory");
    }
    if (files.empty()) throw Error("data: no files under '" + path + "'");
    return files;
}

std::string read_all(const fs::path & p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw Error("data: cannot read '" + p.string() + "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

Dataset Dataset::from_path(const std::string & path, const Tokenizer & tok, const DatasetOptions & opts) {
    std::vector<std::vector<TokenId>> docs;
    for (const fs::path & f : text_files(path)) {
        docs.push_back(tok.encode(read_all(f), {.add_bos = false, .add_eos = false, .parse_special = false}));
    }
    return from_documents(docs, tok.vocab().bos, tok.vocab().eos, opts, path);
}

Dataset Dataset::from_documents(const std::vector<std::vector<TokenId>> & docs, TokenId bos, TokenId eos,
                                const DatasetOptions & opts, std::string source) {
    if (opts.n_ctx < 1) throw Error("data: n_ctx must be >= 1");
    if (opts.val_fraction < 0.0 || opts.val_fraction >= 1.0) throw Error("data: the validation fraction must be in [0, 1)");
    Dataset d;
    d.opts_ = opts;
    d.source_ = std::move(source);
    d.n_docs_ = static_cast<int64_t>(docs.size());
    for (const auto & doc : docs) {
        if (bos != kNoToken) d.stream_.push_back(bos);
        d.stream_.insert(d.stream_.end(), doc.begin(), doc.end());
        if (eos != kNoToken) d.stream_.push_back(eos);
    }
    d.pad_ = eos != kNoToken ? eos : 0;
    const int64_t n = d.n_tokens();
    if (n < 2) throw Error("data: " + d.source_ + " holds " + std::to_string(n) + " tokens, too few to train on");
    d.n_seq_ = (n - 1 + opts.n_ctx - 1) / opts.n_ctx;  // each sequence predicts n_ctx tokens
    int64_t n_val = 0;
    if (opts.val_fraction > 0.0) {
        if (d.n_seq_ < 2) {
            throw Error("data: " + d.source_ + " gives " + std::to_string(d.n_seq_) + " sequence of " + std::to_string(opts.n_ctx) +
                        " tokens: too few to hold some out for validation (shorter --ctx, more text, or no validation split)");
        }
        n_val = std::clamp<int64_t>(static_cast<int64_t>(static_cast<double>(d.n_seq_) * opts.val_fraction + 0.5), 1, d.n_seq_ - 1);
    }
    d.n_train_ = d.n_seq_ - n_val;
    return d;
}

void Dataset::sequence(int64_t index, int32_t * inputs, int32_t * targets) const {
    const int64_t n = n_tokens(), T = opts_.n_ctx, begin = index * T;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t i = begin + t;
        const bool real = i + 1 < n;
        inputs[t] = i < n ? stream_[static_cast<size_t>(i)] : pad_;
        targets[t] = real ? stream_[static_cast<size_t>(i + 1)] : kIgnore;
    }
}

int64_t Dataset::shuffled(int64_t epoch, int64_t i) const {
    if (perm_epoch_ != epoch) {
        perm_.resize(static_cast<size_t>(n_train_));
        for (int64_t j = 0; j < n_train_; ++j) perm_[static_cast<size_t>(j)] = j;
        Rng rng(opts_.seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(epoch + 1)));
        for (int64_t j = n_train_ - 1; j > 0; --j) {  // Fisher-Yates
            std::swap(perm_[static_cast<size_t>(j)], perm_[static_cast<size_t>(rng.below(static_cast<uint64_t>(j + 1)))]);
        }
        perm_epoch_ = epoch;
    }
    return perm_[static_cast<size_t>(i)];
}

void Dataset::train_sequence(int64_t pos, int32_t * inputs, int32_t * targets) const {
    if (pos < 0) throw Error("data: negative position");
    sequence(shuffled(pos / n_train_, pos % n_train_), inputs, targets);
}

void Dataset::val_sequence(int64_t i, int32_t * inputs, int32_t * targets) const {
    if (i < 0 || i >= n_val()) throw Error("data: validation sequence " + std::to_string(i) + " out of range");
    sequence(n_train_ + i, inputs, targets);
}

}  // namespace toyllm
