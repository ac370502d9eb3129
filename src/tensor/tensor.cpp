#include "toyllm/tensor.h"

#include <cstdlib>
#include <cstring>

namespace toyllm {

namespace {

constexpr size_t kAlign = 64;  // cache line; also AVX-512 vector size

void set_contiguous_strides(Tensor & t) {
    const DTypeInfo & info = dtype_info(t.type);
    t.nb[0] = info.type_size;
    t.nb[1] = t.nb[0] * (t.ne[0] / info.block_size);
    for (int d = 2; d < kMaxDims; ++d) t.nb[d] = t.nb[d - 1] * t.ne[d - 1];
}

}  // namespace

size_t Tensor::n_bytes() const {
    const DTypeInfo & info = dtype_info(type);
    size_t bytes = static_cast<size_t>(ne[0] / info.block_size) * info.type_size;
    for (int d = 1; d < kMaxDims; ++d) bytes += static_cast<size_t>(ne[d] - 1) * static_cast<size_t>(nb[d]);
    return bytes;
}

bool Tensor::is_contiguous() const {
    const DTypeInfo & info = dtype_info(type);
    int64_t expect = info.type_size;
    if (nb[0] != expect) return false;
    expect *= ne[0] / info.block_size;
    for (int d = 1; d < kMaxDims; ++d) {
        if (ne[d] != 1 && nb[d] != expect) return false;
        expect *= ne[d];
    }
    return true;
}

int Tensor::n_dims() const {
    for (int d = kMaxDims - 1; d > 0; --d) {
        if (ne[d] > 1) return d + 1;
    }
    return 1;
}

std::string shape_str(const Tensor & t) {
    std::string s = "[";
    for (int d = 0; d < t.n_dims(); ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "]";
}

Tensor * Context::new_tensor(DType type, std::span<const int64_t> ne, std::string name) {
    if (ne.empty() || ne.size() > kMaxDims) {
        throw Error("new_tensor '" + name + "': " + std::to_string(ne.size()) + " dims (1 to 4 allowed)");
    }
    Tensor & t = tensors_.emplace_back();
    t.type = type;
    for (size_t d = 0; d < ne.size(); ++d) {
        if (ne[d] < 1) throw Error("new_tensor '" + name + "': dimension " + std::to_string(d) + " is " + std::to_string(ne[d]));
        t.ne[d] = ne[d];
    }
    if (t.ne[0] % dtype_info(type).block_size != 0) {
        throw Error("new_tensor '" + name + "': ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of " +
                    std::string(dtype_name(type)) + "'s block size");
    }
    set_contiguous_strides(t);
    t.name = std::move(name);
    return &t;
}

Tensor * Context::new_op(Op op, DType type, std::span<const int64_t> ne, std::initializer_list<Tensor *> srcs) {
    TOYLLM_ASSERT(srcs.size() <= kMaxSrc);
    Tensor * t = new_tensor(type, ne);
    t->op = op;
    int i = 0;
    for (Tensor * s : srcs) t->src[i++] = s;
    return t;
}

void Context::Free::operator()(void * p) const { std::free(p); }

void Context::alloc(Tensor * t) {
    TOYLLM_ASSERT(t->op == Op::NONE && t->data == nullptr);
    const size_t bytes = (t->n_bytes() + kAlign - 1) / kAlign * kAlign;
    void * p = std::aligned_alloc(kAlign, bytes);
    if (p == nullptr) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes for '" + t->name + "'");
    std::memset(p, 0, bytes);
    host_.emplace_back(p);
    t->data = p;
}

void Context::set_external(Tensor * t, void * data, std::shared_ptr<const void> owner) {
    TOYLLM_ASSERT(t->op == Op::NONE);
    t->data = data;
    if (owner) keep_alive_.push_back(std::move(owner));
}

void Context::set_param(Tensor * t) {
    if (t->type != DType::F32) throw Error("set_param '" + t->name + "': trainable tensors must be f32, not " + std::string(dtype_name(t->type)));
    if (t->op != Op::NONE) throw Error("set_param '" + t->name + "': only leaf tensors can be parameters");
    t->flags |= TENSOR_PARAM;
    t->flags &= ~TENSOR_CONSTANT;  // the optimizer writes it
}

}  // namespace toyllm
