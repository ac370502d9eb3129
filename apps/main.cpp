// toyllm: the command-line program. Dispatches to one subcommand per file and turns
// every error into one line on stderr and a non-zero exit status.
#include "commands.h"

#include "toyllm/error.h"

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

struct Command {
    const char * name;
    int (*run)(const std::vector<std::string> &);
    const char * summary;
};

const Command kCommands[] = {
    {"demo", toyllm::cli::cmd_demo, "write a tiny model file and show it (the README's first command)"},
    {"info", toyllm::cli::cmd_info, "print a GGUF file's metadata and tensor table"},
    {"generate", toyllm::cli::cmd_generate, "continue a prompt (streams text)"},
    {"init", toyllm::cli::cmd_init, "write a model with random weights (presets b135m, b1b, ...)"},
    {"quantize", toyllm::cli::cmd_quantize, "store a model's weight matrices in another type"},
    {"logits", toyllm::cli::cmd_logits, "write the logits of token ids (.npy)"},
    {"bench", toyllm::cli::cmd_bench, "prefill and decode speed, next to the memory-bandwidth bound"},
    {"convert", toyllm::cli::cmd_convert, "write a GGUF from a llama2.c checkpoint or a Hugging Face directory"},
    {"perplexity", toyllm::cli::cmd_perplexity, "perplexity of a text file, as llama.cpp's llama-perplexity computes it"},
    {"train", toyllm::cli::cmd_train, "train a model from random initialization"},
    {"finetune", toyllm::cli::cmd_finetune, "fine-tune a model: all weights, or LoRA adapters (--lora)"},
    {"export", toyllm::cli::cmd_export, "write a training run's model or adapter GGUF"},
    {"merge", toyllm::cli::cmd_merge, "fold a LoRA adapter into a model's weights"},
    {"plot", toyllm::cli::cmd_plot, "draw a run's loss curves as SVG"},
    {"tokenize", toyllm::cli::cmd_tokenize, "print the token ids of a text (GGUF vocab or tokenizer.json)"},
};

void print_usage(FILE * out) {
    std::fprintf(out, "usage: toyllm COMMAND [OPTIONS]   (toyllm COMMAND --help for its options)\n\ncommands:\n");
    for (const Command & c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const std::string name = argv[1];
    if (name == "-h" || name == "--help" || name == "help") {
        print_usage(stdout);
        return 0;
    }
    const std::vector<std::string> rest(argv + 2, argv + argc);
    for (const Command & c : kCommands) {
        if (name != c.name) continue;
        try {
            return c.run(rest);
        } catch (const toyllm::UsageError & e) {
            std::fprintf(stderr, "toyllm %s: %s (see toyllm %s --help)\n", c.name, e.what(), c.name);
            return 2;
        } catch (const std::exception & e) {
            std::fprintf(stderr, "toyllm %s: error: %s\n", c.name, e.what());
            return 1;
        }
    }
    std::fprintf(stderr, "toyllm: unknown command '%s'\n", name.c_str());
    print_usage(stderr);
    return 2;
}
