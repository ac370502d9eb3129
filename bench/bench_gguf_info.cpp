// How long `toyllm info` takes on a model-sized GGUF file (goal: under 0.2 s).
//
// Writes once a ~1.2 GB file shaped like TinyLlama-1.1B in q8_0: the 32000-token
// llama-spm vocab, llama.* keys and 200 tensors. The tensor data are views of one
// zero-filled anonymous mapping, so writing the file costs disk, not RAM. Then measures
//   BM_open_walk       GgufFile::open and a walk over every kv value and tensor info
//   BM_cli_info        the real CLI, `toyllm info FILE > /dev/null`, as a child process
//   BM_cli_info_cold   the same after posix_fadvise(POSIX_FADV_DONTNEED) on the file
// The file has just been written, so the first two see a warm page cache; without root
// the cache cannot be dropped, and DONTNEED only asks the kernel to evict the file's
// clean pages, hence "cold-ish".
//
// Environment: TOYLLM_SHARED (reference data; default ../shared next to the source
// tree), TOYLLM_BIN (the toyllm binary or its folder; default this binary's folder),
// TOYLLM_BENCH_DIR (where to write the file; default a new folder under $TMPDIR).
#include "toyllm/gguf.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char ** environ;

namespace {

namespace fs = std::filesystem;
using toyllm::DType;

// TinyLlama-1.1B (Llama 2 architecture with grouped-query attention).
struct ModelShape {
    int64_t n_embd = 2048;     // hidden size
    int64_t n_ff = 5632;       // SwiGLU inner size
    int64_t n_kv = 256;        // 4 kv heads x 64: the width of attn_k and attn_v
    int64_t n_vocab = 32000;   // matches the copied llama-spm vocab
    uint32_t n_layer = 22;
    uint32_t n_head = 32;
    uint32_t n_head_kv = 4;
    uint32_t n_ctx = 2048;
    DType matrix_type = DType::Q8_0;  // what a q8_0 conversion gives the block matrices
    uint32_t file_type = 7;           // llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0
};

struct TensorSpec {
    std::string name;
    DType type;
    std::vector<int64_t> ne;  // innermost first
};

std::vector<TensorSpec> tensor_table(const ModelShape & m) {
    std::vector<TensorSpec> ts;
    ts.push_back({"token_embd.weight", DType::F16, {m.n_embd, m.n_vocab}});
    for (uint32_t i = 0; i < m.n_layer; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        ts.push_back({b + "attn_norm.weight", DType::F32, {m.n_embd}});
        ts.push_back({b + "attn_q.weight", m.matrix_type, {m.n_embd, m.n_embd}});
        ts.push_back({b + "attn_k.weight", m.matrix_type, {m.n_embd, m.n_kv}});
        ts.push_back({b + "attn_v.weight", m.matrix_type, {m.n_embd, m.n_kv}});
        ts.push_back({b + "attn_output.weight", m.matrix_type, {m.n_embd, m.n_embd}});
        ts.push_back({b + "ffn_norm.weight", DType::F32, {m.n_embd}});
        ts.push_back({b + "ffn_gate.weight", m.matrix_type, {m.n_embd, m.n_ff}});
        ts.push_back({b + "ffn_up.weight", m.matrix_type, {m.n_embd, m.n_ff}});
        ts.push_back({b + "ffn_down.weight", m.matrix_type, {m.n_ff, m.n_embd}});
    }
    // No output.weight: llama.cpp then ties the output to token_embd.
    ts.push_back({"output_norm.weight", DType::F32, {m.n_embd}});
    return ts;
}

uint64_t tensor_bytes(const TensorSpec & t) {
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    const toyllm::DTypeInfo & info = toyllm::dtype_info(t.type);
    return static_cast<uint64_t>(n / info.block_size) * info.type_size;
}

std::string env_or(const char * name, const std::string & fallback) {
    const char * v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

std::string toyllm_binary() {
    const fs::path self_dir = fs::read_symlink("/proc/self/exe").parent_path();
    fs::path bin = env_or("TOYLLM_BIN", self_dir.string());
    if (fs::is_directory(bin)) bin /= "toyllm";
    return bin.string();
}

// The benchmark file: written by the constructor, removed by the destructor.
class ModelFile {
  public:
    ModelFile() {
        const char * dir = std::getenv("TOYLLM_BENCH_DIR");
        if (dir != nullptr && *dir != '\0') {
            dir_ = dir;
        } else {
            std::string tmpl = (fs::temp_directory_path() / "toyllm-bench-XXXXXX").string();
            if (::mkdtemp(tmpl.data()) == nullptr) throw toyllm::IoError("cannot create a folder in " + tmpl);
            dir_ = tmpl;
            own_dir_ = true;
        }
        path_ = (dir_ / "tinyllama-shaped-q8_0.gguf").string();
        write();
    }
    ~ModelFile() {
        std::error_code ec;
        fs::remove(path_, ec);
        if (own_dir_) fs::remove(dir_, ec);
    }
    ModelFile(const ModelFile &) = delete;
    ModelFile & operator=(const ModelFile &) = delete;

    const std::string & path() const { return path_; }
    uint64_t size() const { return fs::file_size(path_); }
    size_t n_tensors() const { return n_tensors_; }

  private:
    void write() {
        const std::string shared = env_or("TOYLLM_SHARED", TOYLLM_DEFAULT_SHARED);
        const toyllm::GgufFile vocab = toyllm::GgufFile::open(shared + "/testdata/vocab/ggml-vocab-llama-spm.gguf");
        toyllm::GgufWriter w = toyllm::GgufWriter::copy_of(vocab);
        const ModelShape m;
        w.set_string("general.name", "tinyllama-shaped benchmark file");
        w.set_u32("general.file_type", m.file_type);
        w.set_u32("llama.block_count", m.n_layer);
        w.set_u32("llama.context_length", m.n_ctx);
        w.set_u32("llama.embedding_length", static_cast<uint32_t>(m.n_embd));
        w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(m.n_ff));
        w.set_u32("llama.attention.head_count", m.n_head);
        w.set_u32("llama.attention.head_count_kv", m.n_head_kv);
        w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(m.n_embd / m.n_head));
        w.set_f32("llama.rope.freq_base", 10000.0f);

        const std::vector<TensorSpec> table = tensor_table(m);
        uint64_t largest = 0;
        for (const TensorSpec & t : table) largest = std::max(largest, tensor_bytes(t));
        // Every tensor views the start of one zero mapping; its pages are the kernel's
        // shared zero page until written, so no gigabyte of RAM is committed.
        void * zeros = ::mmap(nullptr, largest, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (zeros == MAP_FAILED) throw toyllm::IoError("cannot map " + std::to_string(largest) + " zero bytes");
        const auto * z = static_cast<const uint8_t *>(zeros);
        for (const TensorSpec & t : table) w.add_tensor(t.name, t.type, t.ne, {z, tensor_bytes(t)});
        n_tensors_ = table.size();
        try {
            w.write(path_);
        } catch (...) {
            ::munmap(zeros, largest);
            throw;
        }
        ::munmap(zeros, largest);
    }

    fs::path dir_;
    bool own_dir_ = false;
    std::string path_;
    size_t n_tensors_ = 0;
};

const ModelFile * g_file = nullptr;
std::string g_bin;

uint64_t walk(const toyllm::GgufFile & f) {
    uint64_t s = 0;
    for (const toyllm::GgufKv & kv : f.kvs()) {
        const toyllm::GgufValue & v = kv.value;
        s += kv.key.size() + v.str.size() + v.scalar[0];
        for (std::string_view str : v.strs) s += str.size() + (str.empty() ? 0 : static_cast<uint8_t>(str[0]));
        for (uint8_t b : v.raw) s += b;
    }
    for (const toyllm::GgufTensorInfo & t : f.tensors()) s += t.name.size() + t.n_bytes + t.offset;
    return s;
}

void evict(const std::string & path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
}

// Runs `toyllm info FILE` with stdout on /dev/null; returns the wall time in seconds,
// or a negative value when the child could not start or failed.
double run_info() {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    std::string arg0 = g_bin, arg1 = "info", arg2 = g_file->path();
    std::array<char *, 4> argv{arg0.data(), arg1.data(), arg2.data(), nullptr};
    const auto t0 = std::chrono::steady_clock::now();
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, g_bin.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return -1;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return std::chrono::duration<double>(t1 - t0).count();
}

void BM_open_walk(benchmark::State & state) {
    for (auto _ : state) {
        const toyllm::GgufFile f = toyllm::GgufFile::open(g_file->path());
        benchmark::DoNotOptimize(walk(f));
    }
}
BENCHMARK(BM_open_walk)->Unit(benchmark::kMillisecond);

void BM_open_walk_cold(benchmark::State & state) {
    for (auto _ : state) {
        evict(g_file->path());
        const auto t0 = std::chrono::steady_clock::now();
        const toyllm::GgufFile f = toyllm::GgufFile::open(g_file->path());
        benchmark::DoNotOptimize(walk(f));
        state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
}
BENCHMARK(BM_open_walk_cold)->UseManualTime()->Unit(benchmark::kMillisecond);

void cli_info(benchmark::State & state, bool cold) {
    for (auto _ : state) {
        if (cold) evict(g_file->path());
        const double s = run_info();
        if (s < 0) {
            state.SkipWithError(("'" + g_bin + " info' failed").c_str());
            break;
        }
        state.SetIterationTime(s);
    }
}
void BM_cli_info(benchmark::State & state) { cli_info(state, false); }
BENCHMARK(BM_cli_info)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_cli_info_cold(benchmark::State & state) { cli_info(state, true); }
BENCHMARK(BM_cli_info_cold)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char ** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    try {
        g_bin = toyllm_binary();
        const ModelFile file;
        g_file = &file;
        const uint64_t size = file.size();
        std::printf("file: %s, %llu bytes (%.2f GiB), %zu tensors\ncli: %s\n", file.path().c_str(),
                    static_cast<unsigned long long>(size), static_cast<double>(size) / (1ull << 30), file.n_tensors(),
                    g_bin.c_str());
        std::fflush(stdout);
        benchmark::AddCustomContext("gguf_file_bytes", std::to_string(size));
        benchmark::RunSpecifiedBenchmarks();
        benchmark::Shutdown();
        g_file = nullptr;
    } catch (const std::exception & e) {
        std::fprintf(stderr, "bench_gguf_info: %s\n", e.what());
        return 1;
    }
    return 0;
}
