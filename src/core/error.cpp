#include "toyllm/error.h"

#include <cstdio>
#include <cstdlib>

namespace toyllm {

void assert_fail(const char * expr, const char * file, int line) {
    std::fprintf(stderr, "toyllm: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
    std::fflush(stderr);
    std::abort();
}

}  // namespace toyllm
