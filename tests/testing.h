// Helpers shared by the tests: where the reference data is, and scratch files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace toyllm::testing {

// The shared reference directory: $TOYLLM_SHARED, else ../shared beside the sources.
std::filesystem::path shared_dir();

// Path of a reference file under shared_dir(). When it is missing the test is skipped,
// except under CI=true where a missing reference is a failure. Use as
//   TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
bool shared_file_present(const std::filesystem::path & p);

// Files in shared_dir()/sub whose names end in `suffix`, sorted.
std::vector<std::filesystem::path> shared_files(const std::string & sub, const std::string & suffix);

// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    const std::filesystem::path & path() const { return path_; }
    std::filesystem::path operator/(const std::string & name) const { return path_ / name; }

  private:
    std::filesystem::path path_;
};

std::vector<uint8_t> read_file_bytes(const std::filesystem::path & p);

// n floats uniform in [-scale, scale] times 2^k, k in -3 .. 3 drawn every 32 values, so
// that the blocks of a quantized row get different scales.
std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.0f);

// One run of the toyllm program ($TOYLLM_BIN/toyllm, else build/release/bin/toyllm)
// through the shell, as a user would type `toyllm ARGS`.
struct CliRun {
    int status = -1;   // exit status (-1 if it did not exit normally)
    std::string out;   // stdout
    std::string err;   // stderr
    std::string both;  // stdout then stderr
};
CliRun run_toyllm(const std::string & args);

}  // namespace toyllm::testing

#define TOYLLM_REQUIRE_SHARED(var, rel)                                                            \
    const std::filesystem::path var = ::toyllm::testing::shared_dir() / (rel);                     \
    if (!::toyllm::testing::shared_file_present(var)) GTEST_SKIP() << "missing reference " << var
