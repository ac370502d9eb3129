// The subcommands of the toyllm program; each lives in apps/cmd_<name>.cpp.
#pragma once

#include <string>
#include <vector>

namespace toyllm::cli {

// Each returns the process exit code; errors are thrown (Error, UsageError).
int cmd_info(const std::vector<std::string> & argv);
int cmd_demo(const std::vector<std::string> & argv);
int cmd_generate(const std::vector<std::string> & argv);
int cmd_init(const std::vector<std::string> & argv);
int cmd_quantize(const std::vector<std::string> & argv);
int cmd_logits(const std::vector<std::string> & argv);
int cmd_bench(const std::vector<std::string> & argv);
int cmd_tokenize(const std::vector<std::string> & argv);
int cmd_convert(const std::vector<std::string> & argv);
int cmd_perplexity(const std::vector<std::string> & argv);
int cmd_train(const std::vector<std::string> & argv);
int cmd_finetune(const std::vector<std::string> & argv);
int cmd_export(const std::vector<std::string> & argv);
int cmd_merge(const std::vector<std::string> & argv);
int cmd_plot(const std::vector<std::string> & argv);

}  // namespace toyllm::cli
