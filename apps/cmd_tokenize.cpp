// toyllm tokenize -m FILE (--text T | --file F) [--no-bos] [--no-special]: the token ids
// of a text, separated by spaces, as llama.cpp's tokenizer gives them.
#include "args.h"
#include "commands.h"

#include "toyllm/tokenizer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace toyllm::cli {

namespace {

std::string read_text_file(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError("cannot open " + path + ": " + std::strerror(errno));
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

int cmd_tokenize(const std::vector<std::string> & argv) {
    Args args("toyllm tokenize -m FILE (--text T | --file F) [--no-bos] [--no-special]",
              "Prints the token ids of a text, separated by spaces. FILE is a GGUF model or vocab file,\n"
              "a Hugging Face tokenizer.json, or a directory holding one. BOS/EOS are added as the\n"
              "file's add_bos_token/add_eos_token say; special-token text such as <|endoftext|> or <s>\n"
              "becomes the special token unless --no-special is given.",
              {
                  {"-m", "FILE", "the tokenizer: GGUF file, tokenizer.json or its directory"},
                  {"--model", "FILE", "same as -m"},
                  {"--text", "T", "the text to tokenize"},
                  {"--file", "F", "read the text from file F (bytes as they are)"},
                  {"--no-bos", "", "do not add BOS (or EOS) even if the file asks for it"},
                  {"--no-special", "", "tokenize special-token text as plain text (parse_special = false)"},
                  {"--ctx", "N", "accepted for uniformity with other commands; ignored (no context here)"},
                  {"--threads", "N", "accepted for uniformity with other commands; ignored (runs on one thread)"},
              });
    if (!args.parse(argv, 0, 0)) return 0;
    args.get_int("--ctx", 0);  // validated, unused
    args.get_int("--threads", 0);
    const auto model = args.has("-m") ? args.get("-m") : args.get("--model");
    if (!model) throw UsageError("-m FILE is required");
    if (args.has("--text") == args.has("--file")) throw UsageError("give exactly one of --text T and --file F");
    const std::string text = args.has("--text") ? *args.get("--text") : read_text_file(*args.get("--file"));

    const auto tok = Tokenizer::load(*model);
    EncodeOptions opts;
    opts.parse_special = !args.has("--no-special");
    if (args.has("--no-bos")) opts.add_bos = opts.add_eos = false;
    const std::vector<TokenId> ids = tok->encode(text, opts);

    std::string line;
    line.reserve(ids.size() * 6 + 1);
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
    return 0;
}

}  // namespace toyllm::cli
