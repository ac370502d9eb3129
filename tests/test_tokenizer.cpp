// Tokenizers against references nobody here wrote: llama.cpp's tokenizer test vectors
// (testdata/vocab/*.inp/.out, produced by llama.cpp for each vocab), llama2.c's prompt ids
// for stories260K, and Hugging Face tokenizer.json files; plus decoding, streaming,
// special tokens, errors and the `toyllm tokenize` command.
#include "testing.h"

#include "toyllm/gguf.h"
#include "toyllm/tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sys/wait.h>
#include <thread>

namespace {

using toyllm::testing::CliRun;
using toyllm::testing::run_toyllm;

using toyllm::EncodeOptions;
using toyllm::StreamDecoder;
using toyllm::TokenId;
using toyllm::Tokenizer;
using toyllm::TokenizerError;

std::string read_all(const std::filesystem::path & p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The cases of an .inp file, split as llama.cpp's test-tokenizer-0 splits them.
std::vector<std::string> read_inputs(const std::filesystem::path & p) {
    const std::string raw = read_all(p);
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> cases;
    for (size_t pos = 0; pos < raw.size();) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            cases.push_back(raw.substr(pos));
            break;
        }
        cases.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    return cases;
}

std::vector<std::vector<TokenId>> read_outputs(const std::filesystem::path & p) {
    std::ifstream in(p);
    std::vector<std::vector<TokenId>> out;
    for (std::string line; std::getline(in, line);) {
        std::vector<TokenId> ids;
        size_t pos = 0;
        while (pos < line.size()) {
            const size_t sp = line.find(' ', pos);
            const std::string tok = line.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos);
            if (!tok.empty()) ids.push_back(std::stoi(tok));
            if (sp == std::string::npos) break;
            pos = sp + 1;
        }
        out.push_back(std::move(ids));
    }
    return out;
}

std::string ids_text(const std::vector<TokenId> & ids) {
    std::string s;
    for (const TokenId id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
    return s;
}

// llama.cpp's test-tokenizer-0 calls common_tokenize(ctx, text, add_special = false,
// parse_special = false).
const EncodeOptions kAsTestTokenizer0 = {.add_bos = false, .add_eos = false, .parse_special = false};

struct VocabCase {
    const char * name;       // ggml-vocab-<name>.gguf.inp/.out
    const char * tokenizer;  // under the shared directory
};

const VocabCase kVocabs[] = {
    {"llama-spm", "testdata/vocab/ggml-vocab-llama-spm.gguf"},
    {"phi-3", "testdata/vocab/ggml-vocab-phi-3.gguf"},
    {"gpt-2", "testdata/vocab/ggml-vocab-gpt-2.gguf"},
    {"deepseek-coder", "testdata/vocab/ggml-vocab-deepseek-coder.gguf"},
    {"deepseek-llm", "testdata/vocab/ggml-vocab-deepseek-llm.gguf"},
    {"falcon", "testdata/vocab/ggml-vocab-falcon.gguf"},
    {"mpt", "testdata/vocab/ggml-vocab-mpt.gguf"},
    {"refact", "testdata/vocab/ggml-vocab-refact.gguf"},
    {"starcoder", "testdata/vocab/ggml-vocab-starcoder.gguf"},
    // Vectors without a GGUF here: the Hugging Face files of the same tokenizers.
    {"llama-bpe", "testdata/hf-tokenizers/llama3/tokenizer.json"},
    {"qwen2", "testdata/hf-tokenizers/qwen3/tokenizer.json"},
    {"deepseek-r1-qwen", "testdata/hf-tokenizers/qwen3/tokenizer.json"},
};

std::string test_name(const char * name) {
    std::string s = name;
    for (char & c : s) {
        if (c == '-') c = '_';
    }
    return s;
}

void PrintTo(const VocabCase & v, std::ostream * os) { *os << v.name; }

class VocabVectors : public ::testing::TestWithParam<VocabCase> {};

TEST_P(VocabVectors, EveryCaseMatchesLlamaCppAndRoundTrips) {
    const VocabCase & vc = GetParam();
    const std::string stem = std::string("testdata/vocab/ggml-vocab-") + vc.name + ".gguf";
    TOYLLM_REQUIRE_SHARED(tok_path, vc.tokenizer);
    TOYLLM_REQUIRE_SHARED(inp_path, stem + ".inp");
    TOYLLM_REQUIRE_SHARED(out_path, stem + ".out");
    const auto tok = Tokenizer::load(tok_path.string());
    const auto inputs = read_inputs(inp_path);
    const auto expected = read_outputs(out_path);
    ASSERT_EQ(inputs.size(), expected.size()) << "the .inp and .out files disagree on the number of cases";
    ASSERT_GT(inputs.size(), 0u);

    size_t matched = 0;
    size_t round_trips = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const std::vector<TokenId> ids = tok->encode(inputs[i], kAsTestTokenizer0);
        if (ids == expected[i]) {
            ++matched;
        } else {
            ADD_FAILURE() << vc.name << " case " << i << " '" << inputs[i] << "'\n  expected " << ids_text(expected[i])
                          << "\n  got      " << ids_text(ids);
        }
        // Decoding is lossless (no clean_up_tokenization_spaces), so every case round-trips.
        const std::string back = tok->decode(ids);
        if (back == inputs[i]) {
            ++round_trips;
        } else {
            ADD_FAILURE() << vc.name << " case " << i << " does not round-trip: '" << inputs[i] << "' -> '" << back << "'";
        }
    }
    std::printf("[ vectors  ] %-16s %zu/%zu match llama.cpp, %zu/%zu round-trip\n", vc.name, matched, inputs.size(),
                round_trips, inputs.size());
    RecordProperty("matched", std::to_string(matched) + "/" + std::to_string(inputs.size()));
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, VocabVectors, ::testing::ValuesIn(kVocabs),
                         [](const ::testing::TestParamInfo<VocabCase> & p) { return test_name(p.param.name); });

struct SkippedVocab {
    const char * name;
    const char * why;
};

const SkippedVocab kSkipped[] = {
    {"bert-bge", "WordPiece (tokenizer.ggml.model = bert) is not supported"},
    {"command-r", "no vocab file present (only .inp/.out in testdata/vocab)"},
    {"chameleon", "no vocab file present (only .inp/.out in testdata/vocab)"},
    {"roberta-bpe", "no vocab file present (only .inp/.out in testdata/vocab)"},
};

void PrintTo(const SkippedVocab & v, std::ostream * os) { *os << v.name; }

class SkippedVectors : public ::testing::TestWithParam<SkippedVocab> {};

TEST_P(SkippedVectors, Skipped) {
    const SkippedVocab & s = GetParam();
    const auto gguf = toyllm::testing::shared_dir() / (std::string("testdata/vocab/ggml-vocab-") + s.name + ".gguf");
    if (std::string(s.why).find("no vocab file") != std::string::npos) {
        ASSERT_FALSE(std::filesystem::exists(gguf)) << gguf << " exists now: add it to kVocabs";
    }
    GTEST_SKIP() << s.name << ": " << s.why;
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, SkippedVectors, ::testing::ValuesIn(kSkipped),
                         [](const ::testing::TestParamInfo<SkippedVocab> & p) { return test_name(p.param.name); });

TEST(Tokenizer, UnsupportedModelsAreClearErrors) {
    TOYLLM_REQUIRE_SHARED(bert, "testdata/vocab/ggml-vocab-bert-bge.gguf");
    try {
        Tokenizer::load(bert.string());
        FAIL() << "a WordPiece vocab loaded";
    } catch (const TokenizerError & e) {
        EXPECT_NE(std::string(e.what()).find("bert (WordPiece) is not supported"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(bert.string()), std::string::npos) << e.what();
    }

    // A made-up model name and a pre-tokenizer llama.cpp does not know.
    const auto make = [](const char * model, const char * pre) {
        toyllm::GgufWriter w;
        w.set_string("tokenizer.ggml.model", model);
        w.set_string("tokenizer.ggml.pre", pre);
        w.set_strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
        w.set_strings("tokenizer.ggml.merges", {"a b"});
        return w.to_bytes();
    };
    const auto foo = make("foo", "default");
    EXPECT_THROW(
        {
            try {
                Tokenizer::from_gguf(toyllm::GgufFile::from_bytes(foo));
            } catch (const TokenizerError & e) {
                EXPECT_NE(std::string(e.what()).find("'foo'"), std::string::npos) << e.what();
                throw;
            }
        },
        TokenizerError);
    const auto bad_pre = make("gpt2", "no-such-pre");
    try {
        Tokenizer::from_gguf(toyllm::GgufFile::from_bytes(bad_pre));
        FAIL() << "an unknown pre-tokenizer loaded";
    } catch (const TokenizerError & e) {
        EXPECT_NE(std::string(e.what()).find("unknown pre-tokenizer tokenizer.ggml.pre = 'no-such-pre'"), std::string::npos)
            << e.what();
    }
    // The tiny vocab with a known pre-tokenizer works: "ab" merges.
    const auto ok = make("gpt2", "gpt-2");
    const auto tok = Tokenizer::from_gguf(toyllm::GgufFile::from_bytes(ok));
    EXPECT_EQ(tok->encode("abba", {.parse_special = false}), (std::vector<TokenId>{2, 1, 0}));
}

TEST(Tokenizer, Stories260KPromptsMatchLlama2c) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref, "testdata/stories260K/greedy_reference.json");
    const auto tok = Tokenizer::load(model.string());
    const auto j = nlohmann::json::parse(read_all(ref));
    int checked = 0;
    for (const auto & [name, c] : j.at("cases").items()) {
        if (!c.contains("prompt") || !c.contains("prompt_ids")) continue;
        const auto expected = c["prompt_ids"].get<std::vector<TokenId>>();
        EXPECT_EQ(tok->encode(c["prompt"].get<std::string>()), expected) << "case " << name;  // BOS by the file's default
        ++checked;
    }
    EXPECT_GT(checked, 0);
    EXPECT_EQ(tok->encode("Once upon a time"), (std::vector<TokenId>{1, 403, 407, 261, 378}));
}

TEST(Tokenizer, BosEosFollowTheFileUnlessOverridden) {
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    TOYLLM_REQUIRE_SHARED(llama3, "testdata/hf-tokenizers/llama3/tokenizer.json");
    TOYLLM_REQUIRE_SHARED(qwen3, "testdata/hf-tokenizers/qwen3/tokenizer.json");
    const auto s = Tokenizer::load(spm.string());
    EXPECT_EQ(s->encode("Hello world"), (std::vector<TokenId>{1, 15043, 3186}));
    EXPECT_EQ(s->encode("Hello world", {.add_bos = false}), (std::vector<TokenId>{15043, 3186}));
    EXPECT_EQ(s->encode("Hello world", {.add_eos = true}), (std::vector<TokenId>{1, 15043, 3186, 2}));
    const auto g = Tokenizer::load(gpt2.string());
    EXPECT_EQ(g->encode("Hello world"), (std::vector<TokenId>{15496, 995}));
    EXPECT_EQ(g->encode("Hello world", {.add_bos = true}), (std::vector<TokenId>{50256, 15496, 995}));
    const auto l = Tokenizer::load(llama3.string());
    EXPECT_EQ(l->encode("Hello world"), (std::vector<TokenId>{128000, 9906, 1917}));
    EXPECT_EQ(l->vocab().eos, 128001);
    const auto q = Tokenizer::load(std::filesystem::path(qwen3).parent_path().string());  // the directory works too
    EXPECT_EQ(q->encode("Hello world"), (std::vector<TokenId>{9707, 1879}));
    EXPECT_EQ(q->vocab().eos, q->find("<|im_end|>"));
}

TEST(Tokenizer, ParseSpecialOnAndOff) {
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    const auto g = Tokenizer::load(gpt2.string());
    const std::string text = "Hello<|endoftext|> world";
    const auto on = g->encode(text, {.parse_special = true});
    const auto off = g->encode(text, {.parse_special = false});
    EXPECT_EQ(on, (std::vector<TokenId>{15496, 50256, 995}));
    EXPECT_EQ(std::count(off.begin(), off.end(), 50256), 0) << ids_text(off);
    EXPECT_GT(off.size(), on.size());
    EXPECT_EQ(g->decode(on), text);
    EXPECT_EQ(g->decode(off), text);
    EXPECT_EQ(g->decode(on, {.render_special = false}), "Hello world");

    const auto s = Tokenizer::load(spm.string());
    const auto s_on = s->encode("<s>Hi", {.add_bos = false, .parse_special = true});
    const auto s_off = s->encode("<s>Hi", {.add_bos = false, .parse_special = false});
    ASSERT_FALSE(s_on.empty());
    EXPECT_EQ(s_on.front(), 1);
    EXPECT_EQ(std::count(s_off.begin(), s_off.end(), 1), 0) << ids_text(s_off);
    EXPECT_EQ(s->decode(s_off), "<s>Hi");
}

TEST(Tokenizer, PiecesAreBytes) {
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    const auto s = Tokenizer::load(spm.string());
    EXPECT_EQ(s->piece(15043), " Hello");
    EXPECT_EQ(s->piece(s->find("<0x0A>")), "\n");
    EXPECT_EQ(s->piece(1), "<s>");
    EXPECT_THROW(s->piece(32000), TokenizerError);
    EXPECT_THROW(s->piece(-1), TokenizerError);
    const auto g = Tokenizer::load(gpt2.string());
    EXPECT_EQ(g->piece(g->find("\xC4\xA0Hello")), " Hello");  // "ĠHello"
    EXPECT_EQ(g->piece(g->find("\xC4\x8A")), "\n");           // "Ċ"
}

TEST(Tokenizer, InvalidUtf8IsTokenizedNotRejected) {
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    const std::string bad = "ok \xFF\xFE x \xE2\x82 \xED\xA0\x80 end\xC3";
    const auto s = Tokenizer::load(spm.string());
    // SPM keeps every byte through byte fallback. Like llama.cpp it cuts characters by the
    // lead byte alone, so an invalid lead byte swallows what follows, here the first bytes
    // of an escaped space, which then come back as the bytes of "▁", not as ' '.
    const std::string kept = "ok \xFF\xFE\xE2\x96\x81x \xE2\x82\xE2\x96\x81\xED\xA0\x80 end\xC3";
    EXPECT_EQ(s->decode(s->encode(bad, kAsTestTokenizer0)), kept);
    const std::string clean_cut = "ok\xFF\xFE" "abc \xE2\x82xyz end\xC3";
    EXPECT_EQ(s->decode(s->encode(clean_cut, kAsTestTokenizer0)), clean_cut);
    const auto g = Tokenizer::load(gpt2.string());
    // As in llama.cpp, bytes that are no UTF-8 become U+FFFD before the byte-level BPE.
    EXPECT_EQ(g->decode(g->encode(bad, kAsTestTokenizer0)),
              "ok \xEF\xBF\xBD\xEF\xBF\xBD x \xEF\xBF\xBD\xEF\xBF\xBD \xED\xA0\x80 end\xEF\xBF\xBD");
}

// Checks that chunks are whole UTF-8 characters and that the stream adds up to `text`.
void expect_streams_whole_characters(const Tokenizer & tok, const std::string & text, const std::string & split_char) {
    const auto ids = tok.encode(text, kAsTestTokenizer0);
    StreamDecoder dec(tok);
    std::string all;
    bool seen_whole = false;
    for (const TokenId id : ids) {
        const std::string chunk = dec.push(id);
        if (chunk.find(split_char) != std::string::npos) seen_whole = true;
        if (!chunk.empty()) {
            EXPECT_NE(static_cast<uint8_t>(chunk.front()) & 0xC0, 0x80) << "chunk starts mid-character";
        }
        all += chunk;
    }
    all += dec.flush();
    EXPECT_EQ(all, text);
    EXPECT_TRUE(seen_whole) << split_char << " was never emitted whole";
}

TEST(StreamDecoder, HoldsACharacterSplitOverTokens) {
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    const auto s = Tokenizer::load(spm.string());
    const auto g = Tokenizer::load(gpt2.string());
    const std::string llama = "\xF0\x9F\xA6\x99";  // U+1F999 has no token: four byte tokens (SPM) / pieces (BPE)

    const auto ids = s->encode(llama + "!", kAsTestTokenizer0);
    ASSERT_EQ(ids.size(), 6u) << ids_text(ids);  // "▁", <0xF0> <0x9F> <0xA6> <0x99>, "!"
    StreamDecoder dec(*s);
    EXPECT_EQ(dec.push(ids[0]), "");  // the dummy-prefix space is dropped
    EXPECT_EQ(dec.push(ids[1]), "");
    EXPECT_EQ(dec.push(ids[2]), "");
    EXPECT_EQ(dec.push(ids[3]), "");
    EXPECT_EQ(dec.push(ids[4]), llama);
    EXPECT_EQ(dec.push(ids[5]), "!");
    EXPECT_EQ(dec.flush(), "");

    const auto g_ids = g->encode(llama, kAsTestTokenizer0);
    ASSERT_GE(g_ids.size(), 2u) << ids_text(g_ids);  // byte-level pieces that each end mid-character
    expect_streams_whole_characters(*g, "a " + llama + " \xC3\xA9t\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD", llama);
    expect_streams_whole_characters(*s, "x " + llama + llama + " y", llama);

    // A stream that stops mid-character gives the held bytes back on flush().
    StreamDecoder cut(*s);
    EXPECT_EQ(cut.push(ids[1]), "");
    EXPECT_EQ(cut.push(ids[2]), "");
    EXPECT_EQ(cut.flush(), "\xF0\x9F");
    // A broken sequence is not held forever: the next ASCII byte releases it.
    StreamDecoder broken(*s);
    EXPECT_EQ(broken.push(ids[1]), "");
    EXPECT_EQ(broken.push(ids[5]), "\xF0!");
}

std::string big_text() {
    std::string base = read_all("/usr/share/common-licenses/GPL-3");
    if (base.size() < 1000) {
        for (int i = 0; i < 2000; ++i) base += "The quick brown fox jumps over the lazy dog, 12345 times! ";
    }
    std::string text;
    while (text.size() < (1u << 20)) text += base;
    return text;
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    const auto g = Tokenizer::load(gpt2.string());
    const std::string text = big_text().substr(0, 100000);
    const auto ref = g->encode(text);
    std::vector<std::vector<TokenId>> got(4);
    std::vector<std::thread> threads;
    for (auto & out : got) threads.emplace_back([&] { out = g->encode(text); });
    for (auto & t : threads) t.join();
    for (const auto & out : got) EXPECT_EQ(out, ref);
}

// ~1 MiB of words made of random letters, digits, punctuation, Cyrillic, CJK and emoji,
// separated by random whitespace: few repeats, so no word is merged for free.
std::string random_words_text() {
    static const char * const kAlphabet[] = {
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u", "w", "y", "A",
        "E", "T", "0", "1", "7", "9", ".", ",", "!", "'", "(", "-", "\xC3\xA9", "\xC3\xBC", "\xC3\x9F", "\xD0\xB0",
        "\xD0\xBD", "\xD1\x8F", "\xE7\x9A\x84", "\xE4\xB8\x80", "\xE6\x98\xAF", "\xF0\x9F\x98\x80", "\xF0\x9F\xA6\x99"};
    static const char * const kSpaces[] = {" ", " ", " ", " ", "  ", "\n", "\t", " \n"};
    uint32_t state = 12345;
    const auto next = [&](uint32_t n) {
        state = state * 1664525u + 1013904223u;
        return (state >> 8) % n;
    };
    std::string text;
    while (text.size() < (1u << 20)) {
        const uint32_t len = 1 + next(12);
        for (uint32_t i = 0; i < len; ++i) text += kAlphabet[next(std::size(kAlphabet))];
        text += kSpaces[next(std::size(kSpaces))];
    }
    return text;
}

// Speed on ~1 MiB of English (GPL-3 repeated, words repeat) and of random words; prints
// MB/s, asserts only that the text comes back.
TEST(Tokenizer, Throughput) {
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    TOYLLM_REQUIRE_SHARED(llama3, "testdata/hf-tokenizers/llama3/tokenizer.json");
    const std::pair<const char *, std::string> texts[] = {{"GPL-3 repeated", big_text()}, {"random words", random_words_text()}};
    for (const auto & path : {spm, gpt2, llama3}) {
        const auto tok = Tokenizer::load(path.string());
        for (const auto & [what, text] : texts) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto ids = tok->encode(text, kAsTestTokenizer0);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("[ speed    ] %-26s %-15s %.2f MB in %.3f s: %6.2f MB/s, %zu tokens\n",
                        path.filename().string().c_str(), what, text.size() / 1e6, s, text.size() / 1e6 / s, ids.size());
            EXPECT_EQ(tok->decode(ids), text);
        }
    }
}

TEST(CliTokenize, PrintsIds) {
    TOYLLM_REQUIRE_SHARED(spm, "testdata/vocab/ggml-vocab-llama-spm.gguf");
    TOYLLM_REQUIRE_SHARED(gpt2, "testdata/vocab/ggml-vocab-gpt-2.gguf");
    TOYLLM_REQUIRE_SHARED(qwen3, "testdata/hf-tokenizers/qwen3/tokenizer.json");
    CliRun r = run_toyllm("tokenize -m " + spm.string() + " --text 'Hello world'");
    EXPECT_EQ(r.status, 0) << r.both;
    EXPECT_EQ(r.both, "1 15043 3186\n");
    r = run_toyllm("tokenize -m " + spm.string() + " --text 'Hello world' --no-bos --ctx 512 --threads 4");
    EXPECT_EQ(r.status, 0) << r.both;
    EXPECT_EQ(r.both, "15043 3186\n");
    r = run_toyllm("tokenize --model " + gpt2.string() + " --text 'Hello<|endoftext|> world'");
    EXPECT_EQ(r.both, "15496 50256 995\n");
    r = run_toyllm("tokenize -m " + gpt2.string() + " --no-special --text '<|endoftext|>'");
    EXPECT_EQ(r.status, 0) << r.both;
    EXPECT_EQ(r.both.find("50256"), std::string::npos) << r.both;
    r = run_toyllm("tokenize -m " + qwen3.string() + " --text 'Hello world'");
    EXPECT_EQ(r.both, "9707 1879\n");

    toyllm::testing::TempDir tmp;
    const auto file = tmp / "in.txt";
    std::ofstream(file, std::ios::binary) << "Hello world\n";
    r = run_toyllm("tokenize -m " + gpt2.string() + " --file " + file.string());
    EXPECT_EQ(r.status, 0) << r.both;
    EXPECT_EQ(r.both, "15496 995 198\n");
}

TEST(CliTokenize, ErrorsExitNonZeroWithOneClearLine) {
    toyllm::testing::TempDir tmp;
    const auto missing = tmp / "missing.gguf";
    CliRun r = run_toyllm("tokenize -m " + missing.string() + " --text hi");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.both.find("cannot open " + missing.string() + ": No such file or directory"), std::string::npos) << r.both;

    r = run_toyllm("tokenize --text hi");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("-m FILE is required"), std::string::npos) << r.both;

    r = run_toyllm("tokenize -m x.gguf");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("exactly one of --text T and --file F"), std::string::npos) << r.both;

    r = run_toyllm("tokenize -m x.gguf --text hi --threads many");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.both.find("--threads expects an integer"), std::string::npos) << r.both;

    const auto bert = toyllm::testing::shared_dir() / "testdata/vocab/ggml-vocab-bert-bge.gguf";
    if (std::filesystem::exists(bert)) {
        r = run_toyllm("tokenize -m " + bert.string() + " --text hi");
        EXPECT_EQ(r.status, 1);
        EXPECT_NE(r.both.find("bert (WordPiece) is not supported"), std::string::npos) << r.both;
    }

    r = run_toyllm("tokenize --help");
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.both.find("usage: toyllm tokenize"), std::string::npos) << r.both;
    EXPECT_NE(r.both.find("--ctx"), std::string::npos) << r.both;
    EXPECT_NE(r.both.find("ignored"), std::string::npos) << r.both;
}

}  // namespace
