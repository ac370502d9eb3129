// llama2.c checkpoints to GGUF, as llama.cpp's convert-llama2c-to-ggml writes them.
//
// Checkpoint (run.c's legacy format, export.py --version 0), little-endian:
//   header   7 x i32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
//            vocab_size < 0 says the classifier wcls is stored at the end (not shared)
//   weights  f32, row-major, each array for all layers at once (head_size = dim / n_heads):
//            token_embedding_table [vocab, dim]
//            rms_att [n_layers, dim]
//            wq [n_layers, n_heads * head_size, dim]       (out, in)
//            wk, wv [n_layers, n_kv_heads * head_size, dim]
//            wo [n_layers, dim, n_heads * head_size]
//            rms_ffn [n_layers, dim]
//            w1 [n_layers, hidden_dim, dim], w2 [n_layers, dim, hidden_dim], w3 like w1
//            rms_final [dim]
//            freq_cis_real, freq_cis_imag [seq_len, head_size / 2]
//            wcls [vocab, dim]   (only when vocab_size < 0)
// run.c ignores freq_cis (it computes RoPE with theta 10000), and so do we. RoPE in
// llama2.c rotates adjacent pairs, as llama.cpp's llama arch does: Q and K are copied
// as they are. An (out, in) row-major matrix is GGUF's ne = [in, out] byte for byte.
//
// Tokenizer (tok.bin): i32 max_token_length, then per token: f32 score, i32 len, len bytes.
#include "toyllm/convert.h"
#include "toyllm/gguf.h"
#include "toyllm/tokenizer.h"

#include "convert/tensor_sink.h"
#include "core/mapped_file.h"

#include <cctype>
#include <cstdlib>
#include <cstring>

namespace toyllm {

namespace {

// export.py's magic for checkpoints of version 1 and later ("ak42" as a little-endian u32).
constexpr uint32_t kVersionedMagic = 0x616b3432;

struct Header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Sequential reads from a mapped file; running out of bytes is an error naming the file.
class Reader {
  public:
    Reader(const MappedFile & f, std::string what) : bytes_(f.bytes()), what_(std::move(what)) {}

    [[noreturn]] void fail(const std::string & msg) const { throw Error(what_ + ": " + msg); }

    void need(uint64_t n, const std::string & item) const {
        if (n > bytes_.size() - pos_) {
            fail("the file ends at byte " + std::to_string(bytes_.size()) + " inside " + item + " (needs " + std::to_string(n) +
                 " bytes from offset " + std::to_string(pos_) + ")");
        }
    }
    template <class T> T read(const std::string & item) {
        need(sizeof(T), item);
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string read_string(uint64_t n, const std::string & item) {
        need(n, item);
        std::string s(reinterpret_cast<const char *>(bytes_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    std::vector<float> read_f32(uint64_t n, const std::string & item) {
        need(n * sizeof(float), item);
        std::vector<float> v(n);
        std::memcpy(v.data(), bytes_.data() + pos_, n * sizeof(float));
        pos_ += n * sizeof(float);
        return v;
    }
    uint64_t left() const { return bytes_.size() - pos_; }
    uint64_t size() const { return bytes_.size(); }

  private:
    std::span<const uint8_t> bytes_;
    std::string what_;
    uint64_t pos_ = 0;
};

Header read_header(Reader & r) {
    if (r.size() >= 4) {
        Reader peek = r;
        if (peek.read<uint32_t>("the magic") == kVersionedMagic) {
            const int32_t version = r.size() >= 8 ? (peek.read<int32_t>("the version")) : -1;
            r.fail("a llama2.c export of version " + std::to_string(version) +
                   " (magic \"ak42\"); only legacy checkpoints (export.py --version 0, run.c's format) are supported");
        }
    }
    Header h{};
    const char * names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    int32_t * fields[] = {&h.dim, &h.hidden_dim, &h.n_layers, &h.n_heads, &h.n_kv_heads, &h.vocab_size, &h.seq_len};
    for (size_t i = 0; i < 7; ++i) *fields[i] = r.read<int32_t>(std::string("the header field ") + names[i]);
    for (size_t i = 0; i < 7; ++i) {
        const int64_t v = i == 5 ? std::abs(static_cast<int64_t>(h.vocab_size)) : *fields[i];
        if (v <= 0) r.fail(std::string("header field ") + names[i] + " = " + std::to_string(*fields[i]) + " (must be > 0)");
    }
    auto header_text = [&] {
        return "dim " + std::to_string(h.dim) + ", n_heads " + std::to_string(h.n_heads) + ", n_kv_heads " + std::to_string(h.n_kv_heads);
    };
    if (h.dim % h.n_heads != 0) r.fail("dim is not a multiple of n_heads (" + header_text() + ")");
    if (h.n_heads % h.n_kv_heads != 0) r.fail("n_heads is not a multiple of n_kv_heads (" + header_text() + ")");
    if ((h.dim / h.n_heads) % 2 != 0) r.fail("head size dim / n_heads is odd (" + header_text() + "): RoPE needs pairs");
    return h;
}

// Bytes of the weights after the header, or a value above `limit` when they would exceed it
// (the products of int32 fields can pass 2^64).
uint64_t weight_bytes(const Header & h, uint64_t limit) {
    const uint64_t dim = h.dim, hd = h.hidden_dim, L = h.n_layers, hs = dim / h.n_heads, kv = h.n_kv_heads * hs;
    const auto vocab = static_cast<uint64_t>(std::abs(static_cast<int64_t>(h.vocab_size)));
    // token_embedding_table, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis, wcls
    const uint64_t parts[][3] = {
        {vocab, dim, 1},  {L, dim, 1},           {L, dim, dim},         {L, kv, dim}, {L, kv, dim},
        {L, dim, dim},    {L, dim, 1},           {L, hd, dim},          {L, dim, hd}, {L, hd, dim},
        {dim, 1, 1},      {h.seq_len + 0ull, hs, 1},  // freq_cis_real and _imag: seq_len * hs / 2 each
        {h.vocab_size < 0 ? vocab : 0, dim, 1},
    };
    uint64_t total = 0;
    for (const auto & p : parts) {
        uint64_t n = 4;
        for (uint64_t f : p) {
            if (__builtin_mul_overflow(n, f, &n)) return limit + 1;
        }
        if (__builtin_add_overflow(total, n, &total) || total > limit) return limit + 1;
    }
    return total;
}

bool is_byte_token(const std::string & s) {
    return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && std::isxdigit(static_cast<unsigned char>(s[3])) &&
           std::isxdigit(static_cast<unsigned char>(s[4])) && s[5] == '>';
}

// tok.bin -> tokens, scores and types, with llama.cpp's fix-ups: ids 0-2 are <unk>, <s>,
// </s> (llama2.c stores them as "<unk>", "\n<s>\n", "\n</s>\n"), spaces become U+2581.
struct Llama2cVocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
};

Llama2cVocab read_vocab(const std::string & path, int64_t n_vocab) {
    const MappedFile file(path);
    Reader r(file, "llama2.c tokenizer " + path);
    r.read<int32_t>("max_token_length");
    Llama2cVocab v;
    for (int64_t id = 0; id < n_vocab; ++id) {
        const std::string item = "token " + std::to_string(id) + " of the " + std::to_string(n_vocab) + " the checkpoint has";
        const float score = r.read<float>(item);
        const int32_t len = r.read<int32_t>(item);
        if (len < 0) r.fail(item + ": length " + std::to_string(len));
        std::string text = r.read_string(static_cast<uint64_t>(len), item);
        TokenType type = TokenType::NORMAL;
        if (id == 0) {
            text = "<unk>", type = TokenType::UNKNOWN;
        } else if (id == 1) {
            text = "<s>", type = TokenType::CONTROL;
        } else if (id == 2) {
            text = "</s>", type = TokenType::CONTROL;
        } else if (text.empty()) {
            type = TokenType::CONTROL;
        } else if (is_byte_token(text)) {
            type = TokenType::BYTE;
        }
        std::string escaped;
        for (char c : text) escaped += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
        v.tokens.push_back(std::move(escaped));
        v.scores.push_back(score);
        v.types.push_back(static_cast<int32_t>(type));
    }
    if (r.left() != 0) {
        r.fail(std::to_string(r.left()) + " bytes follow the " + std::to_string(n_vocab) +
               " tokens of the checkpoint's vocabulary (a tokenizer of another model?)");
    }
    return v;
}

}  // namespace

ConvertReport convert_llama2c(const Llama2cSource & src, const std::string & out_path, const ConvertOptions & opts) {
    const MappedFile file(src.checkpoint);
    Reader r(file, "llama2.c checkpoint " + src.checkpoint);
    const Header h = read_header(r);
    const bool shared_classifier = h.vocab_size > 0;
    const int64_t n_vocab = std::abs(static_cast<int64_t>(h.vocab_size));
    const uint64_t want = weight_bytes(h, r.left());
    if (want != r.left()) {
        r.fail("the header (dim " + std::to_string(h.dim) + ", hidden_dim " + std::to_string(h.hidden_dim) + ", n_layers " +
               std::to_string(h.n_layers) + ", vocab_size " + std::to_string(h.vocab_size) + ", seq_len " + std::to_string(h.seq_len) +
               ") needs " + (want > r.left() ? "more than " + std::to_string(r.left()) : std::to_string(want)) + " bytes of weights, the file has " +
               std::to_string(r.left()) + (want > r.left() ? " (truncated?)" : ""));
    }
    const Llama2cVocab vocab = read_vocab(src.tokenizer, n_vocab);

    const int64_t dim = h.dim, hd = h.hidden_dim, L = h.n_layers, hs = dim / h.n_heads;
    const int64_t q_rows = h.n_heads * hs, kv_rows = h.n_kv_heads * hs;
    auto per_layer = [&](const char * what, int64_t n) {
        std::vector<std::vector<float>> layers;
        for (int64_t il = 0; il < L; ++il) layers.push_back(r.read_f32(static_cast<uint64_t>(n), what));
        return layers;
    };
    const auto tok_embd = r.read_f32(static_cast<uint64_t>(n_vocab * dim), "token_embedding_table");
    const auto rms_att = per_layer("rms_att", dim);
    const auto wq = per_layer("wq", q_rows * dim);
    const auto wk = per_layer("wk", kv_rows * dim);
    const auto wv = per_layer("wv", kv_rows * dim);
    const auto wo = per_layer("wo", dim * q_rows);
    const auto rms_ffn = per_layer("rms_ffn", dim);
    const auto w1 = per_layer("w1", hd * dim);
    const auto w2 = per_layer("w2", dim * hd);
    const auto w3 = per_layer("w3", hd * dim);
    const auto rms_final = r.read_f32(static_cast<uint64_t>(dim), "rms_final");
    r.read_f32(static_cast<uint64_t>(h.seq_len) * static_cast<uint64_t>(hs), "freq_cis");
    const auto wcls = shared_classifier ? std::vector<float>() : r.read_f32(static_cast<uint64_t>(n_vocab * dim), "wcls");

    // Keys in the order llama.cpp's converter writes them.
    GgufWriter w;
    w.set_strings("tokenizer.ggml.tokens", vocab.tokens);
    w.set_array("tokenizer.ggml.scores", GgufType::FLOAT32, vocab.scores.data(), vocab.scores.size());
    w.set_array("tokenizer.ggml.token_type", GgufType::INT32, vocab.types.data(), vocab.types.size());
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "llama");
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.seperator_token_id", UINT32_MAX);  // sic: llama.cpp's key name
    w.set_u32("tokenizer.ggml.padding_token_id", UINT32_MAX);
    w.set_u32("llama.context_length", static_cast<uint32_t>(h.seq_len));
    w.set_u32("llama.embedding_length", static_cast<uint32_t>(dim));
    w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(hd));
    w.set_u32("llama.attention.head_count", static_cast<uint32_t>(h.n_heads));
    w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(h.n_kv_heads));
    w.set_u32("llama.block_count", static_cast<uint32_t>(L));
    w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(hs));
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);  // run.c's rmsnorm
    if (opts.type) {
        w.set_u32("general.file_type", gguf_file_type(*opts.type));
        if (dtype_info(*opts.type).block_size > 1) w.set_u32("general.quantization_version", 2);
    }

    TensorSink sink(w, opts.type);
    sink.add("token_embd.weight", {dim, n_vocab}, tok_embd, DType::F32);
    sink.add("output_norm.weight", {dim}, rms_final, DType::F32);
    if (!shared_classifier) sink.add("output.weight", {dim, n_vocab}, wcls, DType::F32);
    for (int64_t il = 0; il < L; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        const auto i = static_cast<size_t>(il);
        sink.add(p + "attn_q.weight", {dim, q_rows}, wq[i], DType::F32);
        sink.add(p + "attn_k.weight", {dim, kv_rows}, wk[i], DType::F32);
        sink.add(p + "attn_v.weight", {dim, kv_rows}, wv[i], DType::F32);
        sink.add(p + "attn_output.weight", {q_rows, dim}, wo[i], DType::F32);
        sink.add(p + "attn_norm.weight", {dim}, rms_att[i], DType::F32);
        sink.add(p + "ffn_gate.weight", {dim, hd}, w1[i], DType::F32);
        sink.add(p + "ffn_down.weight", {hd, dim}, w2[i], DType::F32);
        sink.add(p + "ffn_up.weight", {dim, hd}, w3[i], DType::F32);
        sink.add(p + "ffn_norm.weight", {dim}, rms_ffn[i], DType::F32);
    }
    w.write(out_path);
    return {.arch = "llama", .n_tensors = sink.n_tensors(), .n_vocab = n_vocab, .tied_output = shared_classifier};
}

}  // namespace toyllm
