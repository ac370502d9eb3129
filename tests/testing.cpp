#include "testing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sys/wait.h>

namespace toyllm::testing {

std::filesystem::path shared_dir() {
    if (const char * env = std::getenv("TOYLLM_SHARED"); env != nullptr && *env != '\0') return env;
    return TOYLLM_DEFAULT_SHARED;
}

static bool in_ci() {
    const char * ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

bool shared_file_present(const std::filesystem::path & p) {
    if (std::filesystem::exists(p)) return true;
    if (in_ci()) ADD_FAILURE() << "reference file missing under CI=true: " << p;
    return false;
}

std::vector<std::filesystem::path> shared_files(const std::string & sub, const std::string & suffix) {
    std::vector<std::filesystem::path> out;
    const auto dir = shared_dir() / sub;
    if (!std::filesystem::is_directory(dir)) {
        if (in_ci()) ADD_FAILURE() << "reference directory missing under CI=true: " << dir;
        return out;
    }
    for (const auto & e : std::filesystem::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            out.push_back(e.path());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

TempDir::TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        auto p = std::filesystem::temp_directory_path() / ("toyllm-test-" + std::to_string(rd()));
        if (std::filesystem::create_directory(p)) {
            path_ = p;
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::vector<uint8_t> read_file_bytes(const std::filesystem::path & p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + p.string());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

CliRun run_toyllm(const std::string & args) {
    const char * bin = std::getenv("TOYLLM_BIN");
    const std::string exe = std::string(bin ? bin : "build/release/bin") + "/toyllm";
    TempDir tmp;
    const std::filesystem::path err_path = tmp / "stderr";
    CliRun r;
    FILE * p = popen((exe + " " + args + " 2>" + err_path.string()).c_str(), "r");
    if (p == nullptr) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    const auto err = read_file_bytes(err_path);
    r.err.assign(err.begin(), err.end());
    r.both = r.out + r.err;
    return r;
}

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i += 32) {
        const float s = scale * std::ldexp(1.0f, static_cast<int>(rng() % 7) - 3);
        for (int64_t j = i; j < n && j < i + 32; ++j) v[static_cast<size_t>(j)] = s * u(rng);
    }
    return v;
}

}  // namespace toyllm::testing
