// Packing of weights into bands of 16 rows (repack.h) and the dispatch of the packed
// kernels.
#include "backend/cpu/repack.h"

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/vec_dot.h"
#include "backend/cpu/vec_dot_kernels.h"

#include "toyllm/error.h"
#include "toyllm/half.h"
#include "toyllm/quant.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace toyllm::cpu {

namespace k = kernels;

static_assert(kPackedBandRows == k::kBandRows);
static_assert(sizeof(k::PackedActBlock) == 40);

namespace {

// Bytes of one block of a band: F32 / F16 / BF16: one value of each of the 16 rows;
// Q8_0 / Q4_0: 16 f16 scales and 16 rows of quants; Q4_K: 16 d and 16 dmin, 16 x 8
// scales and 16 x 8 mins, 16 rows of quants; Q6_K: 16 d, 16 x 16 scales, 16 rows of low
// and high quant bits.
int64_t band_block_bytes(DType type) {
    switch (type) {
        case DType::F32: return 16 * 4;
        case DType::F16:
        case DType::BF16: return 16 * 2;
        case DType::Q4_0: return 32 + 16 * 16;
        case DType::Q8_0: return 32 + 16 * 32;
        case DType::Q4_K: return 64 + 256 + 16 * 128;
        case DType::Q6_K: return 32 + 256 + 16 * 192;
        default: TOYLLM_ASSERT(false && "no packed layout");
    }
    return 0;
}

int64_t block_values(DType type) { return static_cast<int64_t>(dtype_info(type).block_size); }

// Q8_0 / Q4_0: the scales, then the quants in runs of 4 bytes per row (Q8_0 + 128).
template <class Block, int kRuns>
void pack_q_block(const uint8_t * w, int64_t w_row_bytes, int64_t n_rows, int64_t r0, int64_t b, uint8_t * dst) {
    constexpr bool q8 = kRuns == 8;
    for (int64_t l = 0; l < kPackedBandRows; ++l) {
        const int64_t r = r0 + l;
        uint16_t d = 0;
        uint8_t q[4 * kRuns];
        std::memset(q, q8 ? 0x80 : 0x88, sizeof q);  // padding: zeros (and scale 0)
        if (r < n_rows) {
            const auto & blk = reinterpret_cast<const Block *>(w + r * w_row_bytes)[b];
            d = blk.d;
            std::memcpy(q, blk.qs, sizeof q);
            if (q8) {
                for (uint8_t & v : q) v = static_cast<uint8_t>(v + 128);
            }
        }
        std::memcpy(dst + 2 * l, &d, 2);
        for (int run = 0; run < kRuns; ++run) std::memcpy(dst + 32 + 64 * run + 4 * l, q + 4 * run, 4);
    }
}

// Q4_K: d, dmin, the unpacked scales and mins and the quants of one block of a band.
void pack_q4_k_block(const uint8_t * w, int64_t w_row_bytes, int64_t n_rows, int64_t r0, int64_t b, uint8_t * dst) {
    for (int64_t l = 0; l < kPackedBandRows; ++l) {
        const int64_t r = r0 + l;
        k::Q4_KBlock blk{};  // padding: d = dmin = 0, so zeros
        if (r < n_rows) std::memcpy(&blk, w + r * w_row_bytes + b * static_cast<int64_t>(sizeof blk), sizeof blk);
        std::memcpy(dst + 2 * l, &blk.d, 2);
        std::memcpy(dst + 32 + 2 * l, &blk.dmin, 2);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc = 0, m = 0;
            q4_k_scale_min(j, blk.scales, sc, m);
            dst[64 + 16 * j + l] = sc;
            dst[192 + 16 * j + l] = m;
        }
        for (int run = 0; run < 32; ++run) std::memcpy(dst + 320 + 64 * run + 4 * l, blk.qs + 4 * run, 4);
    }
}

// Q6_K: d, the scales ([sub-block][row]), then per half h and group g of 4 positions the
// runs of ql[64h + 4g ..], ql[64h + 32 + 4g ..] and qh[32h + 4g ..].
void pack_q6_k_block(const uint8_t * w, int64_t w_row_bytes, int64_t n_rows, int64_t r0, int64_t b, uint8_t * dst) {
    for (int64_t l = 0; l < kPackedBandRows; ++l) {
        const int64_t r = r0 + l;
        k::Q6_KBlock blk{};  // padding: d = 0, so zeros
        if (r < n_rows) std::memcpy(&blk, w + r * w_row_bytes + b * static_cast<int64_t>(sizeof blk), sizeof blk);
        std::memcpy(dst + 2 * l, &blk.d, 2);
        for (int j = 0; j < 16; ++j) dst[32 + 16 * j + l] = static_cast<uint8_t>(blk.scales[j]);
        for (int h = 0; h < 2; ++h) {
            for (int g = 0; g < 8; ++g) {
                uint8_t * run = dst + 288 + 64 * (24 * h + 3 * g) + 4 * l;
                std::memcpy(run, blk.ql + 64 * h + 4 * g, 4);
                std::memcpy(run + 64, blk.ql + 64 * h + 32 + 4 * g, 4);
                std::memcpy(run + 128, blk.qh + 32 * h + 4 * g, 4);
            }
        }
    }
}

// F32 / F16 / BF16: value k of the band's rows (zeros past the matrix) at k * 16 + row.
template <class T>
void pack_plain_band(const uint8_t * w, int64_t w_row_bytes, int64_t n_rows, int64_t n, int64_t r0, uint8_t * dst) {
    auto * out = reinterpret_cast<T *>(dst);
    const int64_t rows = std::min<int64_t>(kPackedBandRows, n_rows - r0);
    if (rows < kPackedBandRows) std::memset(out, 0, static_cast<size_t>(n * kPackedBandRows) * sizeof(T));
    // In blocks of 64 values, so that the 16 rows' writes meet in L1.
    constexpr int64_t kBlock = 64;
    for (int64_t k0 = 0; k0 < n; k0 += kBlock) {
        const int64_t k1 = std::min(n, k0 + kBlock);
        for (int64_t l = 0; l < rows; ++l) {
            const auto * src = reinterpret_cast<const T *>(w + (r0 + l) * w_row_bytes);
            for (int64_t k = k0; k < k1; ++k) out[k * kPackedBandRows + l] = src[k];
        }
    }
}

k::PackedFn packed_fn(DType type) {
#if defined(TOYLLM_X86)
    const SimdLevel level = cpu_features().level;
    if (level == SimdLevel::SCALAR) return nullptr;
    const k::PackedFn * table = level == SimdLevel::AVX512 ? k::kAvx512Packed : k::kAvx2Packed;
    switch (type) {
        case DType::F32: return table[k::kF32];
        case DType::F16: return table[k::kF16];
        case DType::BF16: return table[k::kBF16];
        case DType::Q8_0: return table[k::kQ8_0];
        case DType::Q4_0: return table[k::kQ4_0];
        case DType::Q4_K: return table[k::kQ4_K];
        case DType::Q6_K: return table[k::kQ6_K];
        default: return nullptr;
    }
#else
    (void)type;
    return nullptr;
#endif
}

bool repack_enabled() {
    static const bool on = [] {
        const char * env = std::getenv("TOYLLM_REPACK");
        return env == nullptr || std::string(env) != "0";
    }();
    return on;
}

// The plain copy of a packed weight is rarely read again (get_rows of tied embeddings),
// so its whole pages are advised out of memory: those of a mapped file leave the
// process's resident set and come back from the file if read; memory of the process's
// own (--no-mmap) stays unless there is swap. A hint that keeps the data either way.
void release_pages(const void * data, size_t bytes) {
#if defined(__linux__) && defined(MADV_PAGEOUT)
    const auto page = static_cast<uintptr_t>(4096);
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_PAGEOUT);
#else
    (void)data;
    (void)bytes;
#endif
}

}  // namespace

bool packed_kernel_available(DType type) { return packed_fn(type) != nullptr; }

bool matmul_uses_packed(const Tensor * node) {
    if (node->op != Op::MATMUL || node->params.i[0] != 0 || node->params.i[1] != 0) return false;
    const Tensor * a = node->src[0];
    if ((a->flags & TENSOR_CONSTANT) == 0 || a->data == nullptr || packed_fn(a->type) == nullptr || !repack_enabled()) {
        return false;
    }
    return a->ne[2] == 1 && a->ne[3] == 1 && a->ne[0] % block_values(a->type) == 0 &&
           a->nb[0] == static_cast<int64_t>(dtype_info(a->type).type_size) &&
           a->nb[1] == static_cast<int64_t>(dtype_row_bytes(a->type, a->ne[0]));
}

int64_t packed_bands(int64_t n_rows) { return (n_rows + kPackedBandRows - 1) / kPackedBandRows; }

size_t packed_bytes(DType type, int64_t n_rows, int64_t n) {
    return static_cast<size_t>(packed_bands(n_rows) * (n / block_values(type)) * band_block_bytes(type));
}

void pack_bands(DType type, const void * w, int64_t w_row_bytes, int64_t n_rows, int64_t n, int64_t band_begin,
                int64_t band_end, void * out) {
    const auto * src = static_cast<const uint8_t *>(w);
    auto * bands = static_cast<uint8_t *>(out);
    if (block_values(type) == 1) {
        const int64_t band_bytes = n * band_block_bytes(type);
        for (int64_t band = band_begin; band < band_end; ++band) {
            uint8_t * dst = bands + band * band_bytes;
            if (type == DType::F32) pack_plain_band<uint32_t>(src, w_row_bytes, n_rows, n, kPackedBandRows * band, dst);
            else pack_plain_band<uint16_t>(src, w_row_bytes, n_rows, n, kPackedBandRows * band, dst);
        }
        return;
    }
    using PackBlock = void (*)(const uint8_t *, int64_t, int64_t, int64_t, int64_t, uint8_t *);
    PackBlock pack_block = nullptr;
    switch (type) {
        case DType::Q8_0: pack_block = pack_q_block<k::Q8_0Block, 8>; break;
        case DType::Q4_0: pack_block = pack_q_block<k::Q4_0Block, 4>; break;
        case DType::Q4_K: pack_block = pack_q4_k_block; break;
        case DType::Q6_K: pack_block = pack_q6_k_block; break;
        default: TOYLLM_ASSERT(false && "no packed layout");
    }
    const int64_t nb = n / block_values(type), block_bytes = band_block_bytes(type);
    for (int64_t band = band_begin; band < band_end; ++band) {
        uint8_t * dst = bands + band * nb * block_bytes;
        for (int64_t b = 0; b < nb; ++b) pack_block(src, w_row_bytes, n_rows, kPackedBandRows * band, b, dst + b * block_bytes);
    }
}

int64_t packed_x_row_bytes(DType type, int64_t n) {
    if (block_values(type) == 1) return n * static_cast<int64_t>(sizeof(float));
    if (type == DType::Q4_K || type == DType::Q6_K) return n / k::kQK_K * static_cast<int64_t>(sizeof(k::PackedActKBlock));
    return n / k::kQK * static_cast<int64_t>(sizeof(k::PackedActBlock));
}

namespace {

// x through the plain kernels' conversion for weights of type w (blocks of Conv), then
// each block into a packed activation block by fill.
template <class Conv, class Packed, class Fill>
void convert_blocks(DType w, const float * x, void * out, int64_t n, const Fill & fill) {
    const int64_t nb = n / block_values(w);
    thread_local std::vector<Conv> conv;
    conv.resize(static_cast<size_t>(nb));
    vec_dot_for(w).from_float(x, conv.data(), n);
    auto * dst = static_cast<Packed *>(out);
    for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(dst[b].qs, conv[b].qs, sizeof conv[b].qs);
        fill(conv[b], dst[b]);
    }
}

}  // namespace

void packed_x_from_float(DType type, const float * x, void * out, int64_t n) {
    if (block_values(type) == 1) {
        std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
        return;
    }
    if (type == DType::Q4_K || type == DType::Q6_K) {
        convert_blocks<k::Q8_KBlock, k::PackedActKBlock>(type, x, out, n, [](const k::Q8_KBlock & c, k::PackedActKBlock & p) {
            for (int j = 0; j < 16; ++j) p.sums[j] = c.bsums[j];
            p.d = c.d;
        });
        return;
    }
    convert_blocks<k::Q8_0Block, k::PackedActBlock>(type, x, out, n, [](const k::Q8_0Block & c, k::PackedActBlock & p) {
        int32_t sum = 0;
        for (const int8_t q : c.qs) sum += q;
        p.sum = sum;
        p.d = fp16_to_fp32(c.d);
    });
}

void packed_matmul(const PackedMatArgs & a, int64_t band_begin, int64_t band_end) {
    if (band_end <= band_begin || a.n_cols <= 0) return;
    const k::PackedFn fn = packed_fn(a.w_type);
    TOYLLM_ASSERT(fn != nullptr);
    const int64_t nb = a.n / block_values(a.w_type);
    const int64_t band_bytes = nb * band_block_bytes(a.w_type);
    fn({.w = static_cast<const uint8_t *>(a.w) + band_begin * band_bytes,
        .band_bytes = band_bytes,
        .n_bands = band_end - band_begin,
        .nb = nb,
        .x = a.x,
        .x_row_bytes = a.x_row_bytes,
        .n_cols = a.n_cols,
        .y = a.y + band_begin * kPackedBandRows,
        .ldy = a.ldy,
        .n_rows = a.n_rows - band_begin * kPackedBandRows});
}

void PackedWeights::Free::operator()(void * p) const { std::free(p); }

const void * PackedWeights::find(const Tensor * w) const {
    const auto it = map_.find(w);
    return it != map_.end() && it->second.data == w->data ? it->second.packed : nullptr;
}

uint8_t * PackedWeights::allocate(size_t bytes, const std::string & name) {
    constexpr size_t kAlign = 64, kHuge = size_t{2} << 20;
    slab_used_ = (slab_used_ + kAlign - 1) / kAlign * kAlign;
    if (slabs_.empty() || slab_size_ - slab_used_ < bytes) {
        const size_t size = (std::max(bytes, kSlabBytes) + kHuge - 1) / kHuge * kHuge;
        void * p = std::aligned_alloc(kHuge, size);
        if (p == nullptr) throw Error("cpu backend: out of memory packing " + name + " (" + std::to_string(size) + " bytes)");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        ::madvise(p, size, MADV_HUGEPAGE);  // a hint: no error when THP is off
#endif
        slabs_.emplace_back(static_cast<uint8_t *>(p));
        slab_size_ = size;
        slab_used_ = 0;
    }
    uint8_t * out = slabs_.back().get() + slab_used_;
    slab_used_ += bytes;
    return out;
}

const void * PackedWeights::get(const Tensor * w, ThreadPool & pool, bool release_original) {
    Entry & e = map_[w];
    if (e.packed != nullptr && e.data == w->data) return e.packed;
    const size_t bytes = packed_bytes(w->type, w->ne[1], w->ne[0]);
    if (e.packed == nullptr || e.bytes != bytes) e.packed = allocate(bytes, w->name);
    bytes_ += bytes - e.bytes;
    e.data = w->data;
    e.bytes = bytes;
    uint8_t * p = e.packed;
    const int64_t n_bands = packed_bands(w->ne[1]);
    pool.run([&](int ith, int nth) {
        const RowRange rr = split_rows(n_bands, ith, nth);
        pack_bands(w->type, w->data, w->nb[1], w->ne[1], w->ne[0], rr.begin, rr.end, p);
    });
    if (release_original) release_pages(w->data, static_cast<size_t>(w->nb[1] * w->ne[1]));
    return p;
}

}  // namespace toyllm::cpu
