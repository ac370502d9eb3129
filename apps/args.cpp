#include "args.h"

#include "toyllm/error.h"

#include <cstdio>

namespace toyllm::cli {

Args::Args(std::string usage, std::string summary, std::vector<OptionSpec> options)
    : usage_(std::move(usage)), summary_(std::move(summary)), options_(std::move(options)) {}

const OptionSpec * Args::find(const std::string & name) const {
    for (const OptionSpec & o : options_) {
        if (o.name == name) return &o;
    }
    return nullptr;
}

bool Args::parse(const std::vector<std::string> & argv, size_t min_positional, size_t max_positional) {
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string & a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(help().c_str(), stdout);
            return false;
        }
        if (a.size() < 2 || a[0] != '-' || a == "-") {
            positional_.push_back(a);
            continue;
        }
        const size_t eq = a.find('=');
        const std::string name = a.substr(0, eq);
        const OptionSpec * o = find(name);
        if (o == nullptr) throw UsageError("unknown option " + name);
        if (o->value.empty()) {
            if (eq != std::string::npos) throw UsageError(name + " takes no value");
            values_[name] = "1";
        } else if (eq != std::string::npos) {
            values_[name] = a.substr(eq + 1);
        } else {
            if (i + 1 >= argv.size()) throw UsageError(name + " needs a value (" + o->value + ")");
            values_[name] = argv[++i];
        }
    }
    if (positional_.size() < min_positional || positional_.size() > max_positional) {
        throw UsageError("expected " + (min_positional == max_positional ? std::to_string(min_positional)
                                                                        : std::to_string(min_positional) + " to " +
                                                                              std::to_string(max_positional)) +
                         " argument(s), got " + std::to_string(positional_.size()) + "; usage: " + usage_);
    }
    return true;
}

std::optional<std::string> Args::get(const std::string & name) const {
    const auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
}

int Args::get_int(const std::string & name, int fallback) const {
    const auto v = get(name);
    if (!v) return fallback;
    try {
        size_t used = 0;
        const int x = std::stoi(*v, &used);
        if (used == v->size()) return x;
    } catch (const std::exception &) {
    }
    throw UsageError(name + " expects an integer, got '" + *v + "'");
}

float Args::get_float(const std::string & name, float fallback) const {
    const auto v = get(name);
    if (!v) return fallback;
    try {
        size_t used = 0;
        const float x = std::stof(*v, &used);
        if (used == v->size()) return x;
    } catch (const std::exception &) {
    }
    throw UsageError(name + " expects a number, got '" + *v + "'");
}

std::string Args::help() const {
    std::string s = "usage: " + usage_ + "\n\n" + summary_ + "\n";
    if (!options_.empty()) s += "\noptions:\n";
    for (const OptionSpec & o : options_) {
        std::string left = "  " + o.name + (o.value.empty() ? "" : " " + o.value);
        if (left.size() < 24) left.resize(24, ' ');
        else left += "  ";
        s += left + o.help + "\n";
    }
    s += "  -h, --help              show this help\n";
    return s;
}

}  // namespace toyllm::cli
