// Weights repacked in bands of 16 rows for the matmul kernels of
// vec_dot_packed_avx512.cpp (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) and
// vec_dot_packed_avx2.cpp (Q8_0, Q4_0), which read them as one stream and keep a band's
// outputs in one register per 16 (8) rows (see those files for the arithmetic).
//
// Band j holds rows 16j .. 16j+15 (rows past the matrix are zero padding). F32, F16 and
// BF16 bands hold the 16 rows' value k at k * 16 + row, for k = 0 .. n-1: the kernels
// sum each row in four chains (values 4i + j in chain j, the last n % 4 in chains 0, 1,
// 2; then (chain 0 + chain 1) + (chain 2 + chain 3)). Quantized bands go block by
// block: for block b, the 16 rows' f16 scales (32 bytes), then the quants as 4 (Q4_0) or
// 8 (Q8_0) runs of 64 bytes, run k holding bytes 4k .. 4k+3 of each row's block in row
// order. Q4_0 keeps its stored nibbles (q + 8); Q8_0 quants are stored + 128. Q4_K
// blocks (256 values) hold the 16 rows' d, then their dmin, then the 8 sub-block scales
// and 8 mins unpacked to bytes ([sub-block][row]), then 32 runs of quant bytes; Q6_K
// blocks the 16 rows' d, their 16 scales ([sub-block][row]), then 48 runs of ql and qh
// bytes (vec_dot_packed_avx512.cpp has the order). A band is as many bytes as its 16
// rows in GGUF, a Q4_K band 2368 / 2304 of them, so the copy costs the weights' size once
// more.
//
// Only weights whose bytes never change (TENSOR_CONSTANT: views of a model file) are
// packed; the CPU backend packs each at its first matmul and keeps the copy while it
// lives. TOYLLM_REPACK=0 in the environment turns packing off.
#pragma once

#include "backend/cpu/thread_pool.h"
#include "toyllm/tensor.h"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace toyllm::cpu {

constexpr int64_t kPackedBandRows = 16;

// Whether the current SIMD level has packed kernels for this type: AVX-512 VNNI for F32,
// F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K (vec_dot_packed_avx512.cpp), AVX2 for Q8_0 and
// Q4_0 (vec_dot_packed_avx2.cpp); none in scalar code.
bool packed_kernel_available(DType type);

// Whether this matmul node runs on packed weights: src[0] constant, of a type with packed
// kernels, one 2-D matrix of contiguous rows, and not transposed.
bool matmul_uses_packed(const Tensor * node);

int64_t packed_bands(int64_t n_rows);
size_t packed_bytes(DType type, int64_t n_rows, int64_t n);
// Bands [band_begin, band_end) of the packed form of n_rows rows of n values, w_row_bytes
// apart, into out (which holds the whole packed matrix).
void pack_bands(DType type, const void * w, int64_t w_row_bytes, int64_t n_rows, int64_t n, int64_t band_begin,
                int64_t band_end, void * out);

// The activation rows of the packed kernels: for F32 / F16 / BF16 weights the floats as
// they are; for Q8_0 / Q4_0 weights Q8_0 quants (bit-identical to quantize_row(Q8_0)),
// their block sums and float scales; for Q4_K and Q6_K the Q8_K row of the plain kernels.
int64_t packed_x_row_bytes(DType type, int64_t n);
void packed_x_from_float(DType type, const float * x, void * out, int64_t n);

// y[c * ldy + r] = row r of the packed matrix . activation row c, for the rows of bands
// [band_begin, band_end) and every c < n_cols. Every output has the same bits whatever
// n_cols and the band range.
struct PackedMatArgs {
    DType w_type;
    const void * w;  // the packed matrix
    int64_t n_rows;
    int64_t n;
    const void * x;  // first activation row (packed_x_from_float)
    int64_t x_row_bytes;
    int64_t n_cols;
    float * y;
    int64_t ldy;
};
void packed_matmul(const PackedMatArgs & a, int64_t band_begin, int64_t band_end);

// Packed copies of constant weights, keyed by tensor, made at first use.
class PackedWeights {
  public:
    // The packed copy of w if there is one for its current data, else nullptr.
    const void * find(const Tensor * w) const;
    // The packed copy of w, packed now on the pool's threads if new (or if w's data
    // moved); then, with release_original, w's own pages are advised out of memory.
    const void * get(const Tensor * w, ThreadPool & pool, bool release_original = true);
    size_t bytes() const { return bytes_; }

  private:
    struct Free {
        void operator()(void * p) const;
    };
    struct Entry {
        const void * data = nullptr;  // w->data when packed
        uint8_t * packed = nullptr;   // in one of slabs_
        size_t bytes = 0;
    };
    // The copies are carved one after the other (64-byte aligned, in the order of first
    // use) out of slabs of at least kSlabBytes, 2 MiB aligned and advised for huge pages:
    // small matrices too run over huge pages, and the next matrix follows in memory. A
    // copy repacked at the same size keeps its place; space is given back with the slabs.
    static constexpr size_t kSlabBytes = size_t{32} << 20;
    uint8_t * allocate(size_t bytes, const std::string & name);
    std::unordered_map<const Tensor *, Entry> map_;
    std::vector<std::unique_ptr<uint8_t, Free>> slabs_;
    size_t slab_size_ = 0, slab_used_ = 0;  // of slabs_.back()
    size_t bytes_ = 0;
};

}  // namespace toyllm::cpu
