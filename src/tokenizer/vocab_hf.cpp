// Vocab from a Hugging Face tokenizer.json (the "tokenizers" library's format):
//
//   model          {"type": "BPE", "vocab": {text: id}, "merges": ["a b", ...] or [["a", "b"], ...],
//                   "ignore_merges": bool, "byte_fallback": bool, ...}
//   added_tokens   [{"id", "content", "special", "lstrip", "rstrip", ...}]: special ones become
//                  CONTROL tokens, the others USER_DEFINED (as llama.cpp's converter does)
//   pre_tokenizer  Sequence of Split {"pattern": {"Regex": ...}, "behavior": "Isolated"},
//                  ByteLevel {"use_regex"}, Digits
//   normalizer     null or NFC (not applied, as in llama.cpp)
//   post_processor TemplateProcessing tells whether BOS/EOS are added
//
// tokenizer_config.json next to it (optional): bos_token, eos_token (a string or
// {"content": ...}), add_bos_token, add_eos_token.
#include "toyllm/tokenizer.h"

#include "tokenizer/pretokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

namespace toyllm {

namespace {

using json = nlohmann::json;

class HfReader {
  public:
    explicit HfReader(std::string path) : path_(std::move(path)) {}

    [[noreturn]] void fail(const std::string & msg) const { throw TokenizerError("tokenizer: " + path_ + ": " + msg); }

    json parse(const std::string & path) const {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw IoError("cannot open " + path + ": " + std::strerror(errno));
        try {
            return json::parse(in);
        } catch (const json::exception & e) {
            throw TokenizerError("tokenizer: " + path + ": not valid JSON: " + e.what());
        }
    }

    // Regexes of the pre-tokenizer; sets `byte_level` when a ByteLevel step is present.
    void pre_tokenizer(const json & pt, std::vector<std::string> & regexes, bool & byte_level) const {
        if (pt.is_null()) return;
        const std::string type = pt.value("type", "");
        if (type == "Sequence") {
            for (const json & p : pt.at("pretokenizers")) pre_tokenizer(p, regexes, byte_level);
        } else if (type == "Split") {
            if (pt.value("behavior", "") != "Isolated") fail("pre_tokenizer Split with behavior '" + pt.value("behavior", "") + "' is not supported (only Isolated)");
            if (pt.value("invert", false)) fail("pre_tokenizer Split with invert = true is not supported");
            const json & pat = pt.at("pattern");
            if (pat.contains("Regex")) regexes.push_back(pat["Regex"].get<std::string>());
            else if (pat.contains("String")) regexes.push_back("\\Q" + pat["String"].get<std::string>() + "\\E");
            else fail("pre_tokenizer Split without a Regex or String pattern");
        } else if (type == "ByteLevel") {
            byte_level = true;
            if (pt.value("add_prefix_space", false)) fail("pre_tokenizer ByteLevel with add_prefix_space = true is not supported");
            if (pt.value("use_regex", true)) regexes.push_back(pre_tokenizer_for("gpt-2").regexes.at(0));
        } else if (type == "Digits") {
            regexes.emplace_back(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
        } else {
            fail("pre_tokenizer '" + type + "' is not supported");
        }
    }

    void normalizer(const json & n) const {
        if (n.is_null()) return;
        const std::string type = n.value("type", "");
        if (type == "Sequence") {
            for (const json & s : n.at("normalizers")) normalizer(s);
        } else if (type != "NFC") {
            // NFC is skipped as llama.cpp skips it: it changes only text that is not in NFC.
            fail("normalizer '" + type + "' is not supported");
        }
    }

  private:
    std::string path_;
};

// "<s>" or {"content": "<s>", ...} or null.
std::string token_text(const json & j) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
    return {};
}

}  // namespace

Vocab Vocab::from_tokenizer_json(const std::string & path) {
    const HfReader r(path);
    const json j = r.parse(path);
    Vocab v;
    v.source = path;
    v.kind = TokenizerKind::BPE;
    v.model = "gpt2";
    v.pre = "tokenizer.json";

    if (!j.is_object() || !j.contains("model")) r.fail("no \"model\" object (not a tokenizer.json?)");
    const json & model = j["model"];
    const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
    if (type == "WordPiece") r.fail("model WordPiece is not supported");
    if (type != "BPE") r.fail("model '" + type + "' is not supported (toyllm reads byte-level BPE tokenizer.json)");
    if (model.value("byte_fallback", false)) {
        r.fail("BPE with byte_fallback (a SentencePiece model converted to BPE) is not supported; use the GGUF file");
    }
    for (const char * key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
            r.fail(std::string("BPE with ") + key + " is not supported");
        }
    }

    try {
        constexpr int64_t kMaxVocab = 1 << 24;
        std::vector<std::pair<int64_t, std::string>> entries;
        for (const auto & [text, id] : model.at("vocab").items()) entries.emplace_back(id.get<int64_t>(), text);
        struct Added {
            int64_t id;
            std::string text;
            bool special, lstrip, rstrip;
        };
        std::vector<Added> added;
        if (j.contains("added_tokens")) {
            for (const json & a : j["added_tokens"]) {
                added.push_back({a.at("id").get<int64_t>(), a.at("content").get<std::string>(), a.value("special", false),
                                 a.value("lstrip", false), a.value("rstrip", false)});
            }
        }
        int64_t n = 0;
        for (const auto & e : entries) n = std::max(n, e.first + 1);
        for (const Added & a : added) n = std::max(n, a.id + 1);
        if (n == 0) r.fail("the vocabulary is empty");
        for (const auto & e : entries) {
            if (e.first < 0 || e.first >= kMaxVocab) r.fail("token id " + std::to_string(e.first) + " is out of range");
        }
        for (const Added & a : added) {
            if (a.id < 0 || a.id >= kMaxVocab) r.fail("added token id " + std::to_string(a.id) + " is out of range");
        }
        // Ids no entry names become unused placeholders, as llama.cpp's converter writes them.
        v.tokens.resize(n);
        v.types.assign(n, TokenType::UNUSED);
        v.scores.assign(n, 0.0f);
        for (int64_t i = 0; i < n; ++i) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
        for (auto & e : entries) {
            v.tokens[e.first] = std::move(e.second);
            v.types[e.first] = TokenType::NORMAL;
        }
        for (const Added & a : added) {
            const auto id = static_cast<TokenId>(a.id);
            v.tokens[id] = a.text;
            v.types[id] = a.special ? TokenType::CONTROL : TokenType::USER_DEFINED;
            if (a.lstrip || a.rstrip) v.strip[id] = {.left = a.lstrip, .right = a.rstrip};
        }

        for (const json & m : model.at("merges")) {
            if (m.is_string()) {
                const std::string s = m.get<std::string>();
                const size_t sp = s.find(' ', 1);
                if (sp == std::string::npos) r.fail("merge '" + s + "' has no space");
                v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
            } else if (m.is_array() && m.size() == 2) {
                v.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
            } else {
                r.fail("a merge is neither \"a b\" nor [\"a\", \"b\"]");
            }
        }
        v.ignore_merges = model.value("ignore_merges", false);

        bool byte_level = false;
        r.pre_tokenizer(j.value("pre_tokenizer", json()), v.pre_regexes, byte_level);
        if (!byte_level) r.fail("the pre_tokenizer has no ByteLevel step: only byte-level BPE is supported");
        r.normalizer(j.value("normalizer", json()));

        // BOS/EOS: tokenizer_config.json, else the post-processor's template.
        std::optional<bool> add_bos, add_eos;
        std::string bos_text, eos_text;
        const json & post = j.value("post_processor", json());
        if (post.is_object() && post.value("type", "") == "TemplateProcessing" && post.contains("single")) {
            const json & single = post["single"];
            if (!single.empty() && single.front().contains("SpecialToken")) {
                add_bos = true;
                bos_text = single.front()["SpecialToken"].value("id", "");
            }
            if (single.size() > 1 && single.back().contains("SpecialToken")) {
                add_eos = true;
                eos_text = single.back()["SpecialToken"].value("id", "");
            }
        }
        const std::filesystem::path config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
        bool config_has_bos = false;
        if (std::filesystem::exists(config)) {
            const json c = r.parse(config.string());
            if (c.contains("bos_token")) bos_text = token_text(c["bos_token"]), config_has_bos = !bos_text.empty();
            if (c.contains("eos_token")) eos_text = token_text(c["eos_token"]);
            if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) add_bos = c["add_bos_token"].get<bool>();
            if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) add_eos = c["add_eos_token"].get<bool>();
            if (c.contains("pad_token")) {
                const std::string pad = token_text(c["pad_token"]);
                for (TokenId id = 0; id < v.n_vocab() && !pad.empty(); ++id) {
                    if (v.tokens[id] == pad) v.pad = id;
                }
            }
        }
        for (TokenId id = 0; id < v.n_vocab(); ++id) {
            if (!bos_text.empty() && v.tokens[id] == bos_text) v.bos = id;
            if (!eos_text.empty() && v.tokens[id] == eos_text) v.eos = id;
        }
        // A config that names a BOS token without saying whether to add it (Llama 3's):
        // add it, as llama.cpp does for those models.
        v.add_bos = add_bos.value_or(config_has_bos) && v.bos != kNoToken;
        v.add_eos = add_eos.value_or(false) && v.eos != kNoToken;
        const std::string unk = token_text(model.value("unk_token", json()));
        for (TokenId id = 0; id < v.n_vocab() && !unk.empty(); ++id) {
            if (v.tokens[id] == unk) v.unk = id;
        }
    } catch (const json::exception & e) {
        r.fail(std::string("unexpected structure: ") + e.what());
    }
    return v;
}

}  // namespace toyllm
