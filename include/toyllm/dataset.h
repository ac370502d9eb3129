// Training data: text files tokenized into one stream (each file a document between BOS
// and EOS), cut into sequences of n_ctx + 1 tokens (inputs and the targets one token
// later), the last few held out for validation, the rest visited in a shuffled order
// that depends only on the seed and the epoch, so a run can resume mid-epoch exactly.
//
//   Dataset d = Dataset::from_path("corpus/", *tokenizer, {.n_ctx = 256, .seed = 1});
//   d.train_sequence(step * batch + j, inputs, targets);  // j-th sequence of a step
#pragma once

#include "toyllm/tokenizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace toyllm {

struct DatasetOptions {
    int64_t n_ctx = 128;          // tokens per training sequence
    double val_fraction = 0.1;    // share of the sequences held out (at least 1 when > 0)
    uint64_t seed = 0;            // shuffling
};

class Dataset {
  public:
    static constexpr int32_t kIgnore = -1;  // target of padding positions (no loss)

    // Every regular file under `path` (a file or a directory, recursively, sorted by
    // name). Throws Error for a missing path, no files, or too little text for one sequence.
    static Dataset from_path(const std::string & path, const Tokenizer & tok, const DatasetOptions & opts);
    // Documents already tokenized (BOS/EOS added here when bos/eos != kNoToken).
    static Dataset from_documents(const std::vector<std::vector<TokenId>> & docs, TokenId bos, TokenId eos,
                                  const DatasetOptions & opts, std::string source = "<memory>");

    int64_t n_ctx() const { return opts_.n_ctx; }
    int64_t n_train() const { return n_train_; }
    int64_t n_val() const { return n_seq_ - n_train_; }
    int64_t n_tokens() const { return static_cast<int64_t>(stream_.size()); }
    int64_t n_documents() const { return n_docs_; }
    const std::string & source() const { return source_; }

    // The pos-th sequence of the training stream: epoch pos / n_train, in that epoch's
    // shuffled order. inputs and targets hold n_ctx entries each; padding at the end of
    // the corpus has target kIgnore.
    void train_sequence(int64_t pos, int32_t * inputs, int32_t * targets) const;
    // The i-th validation sequence (fixed order).
    void val_sequence(int64_t i, int32_t * inputs, int32_t * targets) const;

  private:
    void sequence(int64_t index, int32_t * inputs, int32_t * targets) const;
    int64_t shuffled(int64_t epoch, int64_t i) const;

    DatasetOptions opts_;
    std::vector<TokenId> stream_;
    TokenId pad_ = 0;
    int64_t n_seq_ = 0, n_train_ = 0, n_docs_ = 0;
    std::string source_;
    mutable int64_t perm_epoch_ = -1;  // the epoch perm_ belongs to
    mutable std::vector<int64_t> perm_;
};

}  // namespace toyllm
