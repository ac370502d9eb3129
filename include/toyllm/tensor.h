// Tensors and the context that owns them.
//
// A Tensor is a node: either a leaf (an input, a weight viewing an mmap'd GGUF file, a
// trainable parameter) or the result of an op on up to kMaxSrc sources. Building ops
// only records them; a Graph (graph.h) orders the nodes, plans their memory and runs
// them on a backend. Shapes follow ggml: ne[0] is the innermost, contiguous dimension,
// nb[i] is the stride of dimension i in bytes. A torch (out, in) matrix is ne = [in, out].
//
//   Context ctx;
//   Tensor * x = ctx.new_tensor(DType::F32, {n_embd, n_tokens}, "x");   // [n_embd, T]
//   Tensor * w = ctx.new_tensor(DType::Q8_0, {n_embd, n_ff}, "w");      // [n_embd, n_ff]
//   Tensor * y = matmul(ctx, w, x);                                     // [n_ff, T]
#pragma once

#include "toyllm/dtype.h"
#include "toyllm/error.h"

#include <array>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace toyllm {

constexpr int kMaxDims = 4;
constexpr int kMaxSrc = 4;

// Every op. The table in src/ops/op_table.cpp gives each its name and backward rule,
// and every backend its kernel; both are checked against COUNT at compile time.
enum class Op : uint8_t {
    NONE,                // leaf
    VIEW,                // reshape / permute / transpose / slice: shares src[0]'s memory
    CONT,                // contiguous copy of a (possibly strided) F32 tensor
    GET_ROWS,            // embedding lookup: rows of src[0] picked by the I32 ids src[1]
    GET_ROWS_BACK,       // scatter-add of rows (the gradient of GET_ROWS)
    MATMUL,              // out[n, m] = sum_k a[k, n] * b[k, m], a of any dtype
    ADD,                 // a + b, b broadcast over a
    MUL,                 // a * b, b broadcast over a
    SCALE,               // a * s
    SUM,                 // sum of all elements -> [1]
    SUM_TO,              // sum over the dims where the result is 1 (undoes broadcasting)
    REPEAT,              // broadcast src[0] to the shape of the node
    RMS_NORM,            // x / rms(x) over ne[0], times an optional weight src[1]
    RMS_NORM_BACK,       // dx of rms_norm without weight, from x and dy
    ROPE,                // rotary position embedding (normal or NeoX pairs)
    ATTENTION,           // fused causal attention with GQA
    ATTENTION_BACK,      // dq, dk, dv of ATTENTION, packed in one tensor
    CAUSAL_MASK,         // -inf (or 0 for the backward) above the causal diagonal
    SILU,
    SILU_BACK,           // dy * silu'(x)
    SWIGLU,              // silu(gate) * up
    SOFTMAX,             // over ne[0]
    SOFTMAX_BACK,        // y * (dy - sum(dy * y))
    CROSS_ENTROPY,       // mean over tokens of -log softmax(logits)[target], ignore-index
    CROSS_ENTROPY_BACK,  // (softmax - onehot) * dloss / n_valid
    CONCAT,              // along one dim
    ACC,                 // copy of src[0] with src[1] added into a strided window of it
    COUNT,
};

enum TensorFlags : uint32_t {
    TENSOR_INPUT = 1u << 0,   // set by the host before compute
    TENSOR_PARAM = 1u << 1,   // trainable: backward makes a gradient for it
    TENSOR_OUTPUT = 1u << 2,  // read by the host after compute: kept alive, never reused
    TENSOR_LOSS = 1u << 3,
    // State that only graphs read and write (a KV cache): a device backend keeps its own
    // copy and does not copy what a graph writes into it back to the host, whose copy
    // is then stale.
    TENSOR_DEVICE_STATE = 1u << 4,
    // Bytes that never change while the tensor lives (a view of a model file): a backend
    // may keep a copy of them in its own layout.
    TENSOR_CONSTANT = 1u << 5,
};

// Op parameters: a few scalars interpreted per op (see the op's builder in src/ops/).
struct OpParams {
    std::array<int32_t, 8> i{};
    std::array<float, 8> f{};
};

struct Tensor {
    DType type = DType::F32;
    std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};  // elements per dimension
    std::array<int64_t, kMaxDims> nb{};            // bytes between consecutive elements

    Op op = Op::NONE;
    std::array<Tensor *, kMaxSrc> src{};
    OpParams params;

    Tensor * view_src = nullptr;  // VIEW: the tensor whose memory this one shares
    int64_t view_offs = 0;        // byte offset into view_src

    void * data = nullptr;        // host memory (CPU backend); set by allocation
    uint32_t flags = 0;
    Tensor * grad = nullptr;      // set by build_backward for params and what leads to them
    std::string name;

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
    // Bytes spanned from the first to past the last element (contiguous or not).
    size_t n_bytes() const;
    bool is_contiguous() const;
    bool is_param() const { return (flags & TENSOR_PARAM) != 0; }
    int n_dims() const;  // highest dimension > 1, plus one (at least 1)

    template <class T> T * data_as() { return static_cast<T *>(data); }
    template <class T> const T * data_as() const { return static_cast<const T *>(data); }
};

// Owns tensors (stable addresses), the host memory of leaves it allocates, and
// anything that must outlive them (an mmap'd file whose bytes weights view).
class Context {
  public:
    Context() = default;
    Context(const Context &) = delete;
    Context & operator=(const Context &) = delete;

    Tensor * new_tensor(DType type, std::span<const int64_t> ne, std::string name = "");
    Tensor * new_tensor(DType type, std::initializer_list<int64_t> ne, std::string name = "") {
        return new_tensor(type, std::span<const int64_t>(ne.begin(), ne.size()), std::move(name));
    }
    // A new node with the given op, shape and sources (used by op builders).
    Tensor * new_op(Op op, DType type, std::span<const int64_t> ne, std::initializer_list<Tensor *> srcs);

    // Allocates zeroed, 64-byte aligned host memory for t (a leaf) owned by the context.
    void alloc(Tensor * t);
    // Points a leaf at memory the context does not own, keeping `owner` alive.
    void set_external(Tensor * t, void * data, std::shared_ptr<const void> owner);

    // Marks t trainable (F32 only) and names it if unnamed.
    void set_param(Tensor * t);

    const std::deque<Tensor> & tensors() const { return tensors_; }

  private:
    struct Free {
        void operator()(void * p) const;
    };
    std::deque<Tensor> tensors_;
    std::vector<std::unique_ptr<void, Free>> host_;
    std::vector<std::shared_ptr<const void>> keep_alive_;
};

// Keeps t's memory for the host after compute (never reused by the planner).
inline void set_output(Tensor * t) { t->flags |= TENSOR_OUTPUT; }

// Formats "[64, 512]" for messages.
std::string shape_str(const Tensor & t);

}  // namespace toyllm
