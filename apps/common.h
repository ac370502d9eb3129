// Options every model subcommand shares (--ctx, --threads, --device) and their effect.
#pragma once

#include "args.h"

#include "toyllm/session.h"

namespace toyllm::cli {

// `specific` followed by --ctx, --threads, --device, --no-mmap and --cache-type.
std::vector<OptionSpec> with_common_options(std::vector<OptionSpec> specific);

// The model of -m FILE, mapped or (--no-mmap) read into memory.
std::unique_ptr<Model> load_model(const Args & args, const std::string & path);

// The session settings the options ask for; warns on stderr when --ctx exceeds the
// model's context_length (allowed: some files understate it).
SessionConfig session_config(const Args & args, const Model & model);

// Parses "1 2 3" (spaces or commas) into token ids; UsageError on anything else.
std::vector<int32_t> parse_ids(const std::string & text);

// A weight storage type by name (f32, f16, bf16, q8_0, q4_0), for quantize and convert;
// UsageError naming `what` ("TYPE", "--type") for any other name.
DType parse_weight_type(const std::string & what, const std::string & name);

}  // namespace toyllm::cli
