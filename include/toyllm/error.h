// Two tiers of errors:
//  - invariant violations abort with the expression, file and line (TOYLLM_ASSERT);
//  - bad input (a corrupt file, a missing key, a wrong shape through the public API)
//    throws a typed Error whose message names the module and the offending value.
#pragma once

#include <stdexcept>
#include <string>

namespace toyllm {

class Error : public std::runtime_error {
  public:
    explicit Error(const std::string & what) : std::runtime_error(what) {}
};

// Thrown by code that opens, creates or renames files (errno text included).
class IoError : public Error {
  public:
    using Error::Error;
};

// Thrown for bad command-line usage; apps print it with a pointer to --help.
class UsageError : public Error {
  public:
    using Error::Error;
};

[[noreturn]] void assert_fail(const char * expr, const char * file, int line);

}  // namespace toyllm

#define TOYLLM_ASSERT(x) \
    do { if (!(x)) ::toyllm::assert_fail(#x, __FILE__, __LINE__); } while (0)
