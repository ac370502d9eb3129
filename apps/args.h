// A small command-line parser shared by the subcommands: `--name value`, `--name=value`,
// boolean switches and positionals, with --help generated from the declarations.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace toyllm::cli {

struct OptionSpec {
    std::string name;       // "--ctx"
    std::string value;      // "N" (empty for a switch)
    std::string help;       // one line
};

class Args {
  public:
    Args(std::string usage, std::string summary, std::vector<OptionSpec> options);

    // Parses argv (after the subcommand). Returns false when --help was printed.
    // Throws UsageError for unknown options, missing values and wrong positional counts.
    bool parse(const std::vector<std::string> & argv, size_t min_positional, size_t max_positional);

    bool has(const std::string & name) const { return values_.count(name) != 0; }
    std::optional<std::string> get(const std::string & name) const;
    int get_int(const std::string & name, int fallback) const;
    float get_float(const std::string & name, float fallback) const;
    const std::vector<std::string> & positional() const { return positional_; }
    std::string help() const;

  private:
    const OptionSpec * find(const std::string & name) const;

    std::string usage_;
    std::string summary_;
    std::vector<OptionSpec> options_;
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
};

}  // namespace toyllm::cli
