// The op test binary (after ggml's test-backend-ops): every op of ops.h on small graphs
// with odd sizes and non-contiguous inputs, run on the CPU backend with 1 and 2 threads,
// against a naive double-precision reference written here; a gradient mode compares
// autodiff with central finite differences of that reference; a two-layer Llama-shaped
// stack checks the ops composed, its gradients and its determinism; and the errors.
//
// Each case is written once, as a function of a `Dual` builder: every op call records
// the library's node AND computes the reference value from the references of its
// inputs (the views included, re-implemented as index maps, so the library's strides
// are checked rather than trusted). Replaying the same function without a graph, with
// a perturbed leaf, gives the finite differences.
//
// Error metric: normalized max error  max|got - ref| / max(max|ref|, 1e-6).
//
//   what                                   tolerance  why
//   f32 ops                                1e-5       float rounding (6e-8 per op) over
//                                                     sums of at most a few hundred terms
//   rope                                   1e-5       the kernel builds angles as ggml does,
//                                                     theta *= base^(-2/n_rot) in float;
//                                                     positions stay below 40 so the angle
//                                                     error stays below ~5e-6 rad
//   matmul, F16 / BF16 weights             1e-5       the weights' stored values are exact
//                                                     in the reference; activations stay f32
//   matmul, Q8_0 / Q4_0 / Q4_K / Q6_K      2e-2       the reference uses the dequantized
//                                                     stored weights but exact activations;
//                                                     the kernel quantizes the activation row
//                                                     to 8 bits (Q8_0 / Q8_K, as llama.cpp)
//   Llama stack logits                     1e-5       two f32 layers (observed ~2e-7)
//   gradients vs central differences       1e-4       FD of the double reference (h = 1e-6
//                                                     relative, truncation ~1e-12) against
//                                                     f32 autodiff (~1e-6 relative)
#include "toyllm/graph.h"
#include "toyllm/half.h"
#include "toyllm/ops.h"
#include "toyllm/quant.h"
#include "toyllm/tensor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace {

using toyllm::Context;
using toyllm::DType;
using toyllm::Graph;
using toyllm::Tensor;

constexpr double kTolF32 = 1e-5;
constexpr double kTolHalf = 1e-5;
constexpr double kTolQuant = 2e-2;
constexpr double kTolGrad = 1e-4;
constexpr double kFdStep = 1e-6;  // relative to max(1, |x|)

constexpr int kThreadCounts[] = {1, 2};

using Ne = std::array<int64_t, 4>;

Ne pad_ne(std::initializer_list<int64_t> ne) {
    Ne out{1, 1, 1, 1};
    size_t d = 0;
    for (int64_t n : ne) out.at(d++) = n;
    return out;
}

// ---- double-precision tensors: logical values, ne[0] innermost ---------------------

struct DT {
    Ne ne{1, 1, 1, 1};
    std::vector<double> v;

    DT() = default;
    explicit DT(Ne n) : ne(n), v(static_cast<size_t>(n[0] * n[1] * n[2] * n[3]), 0.0) {}

    size_t index(int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
        return static_cast<size_t>(i0 + ne[0] * (i1 + ne[1] * (i2 + ne[2] * i3)));
    }
    double & operator()(int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) { return v[index(i0, i1, i2, i3)]; }
    double operator()(int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) const { return v[index(i0, i1, i2, i3)]; }
    double & at(const int64_t * i) { return v[index(i[0], i[1], i[2], i[3])]; }
    double at(const int64_t * i) const { return v[index(i[0], i[1], i[2], i[3])]; }
};

template <class F> void for_each_index(const Ne & ne, F f) {
    for (int64_t i3 = 0; i3 < ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < ne[1]; ++i1)
                for (int64_t i0 = 0; i0 < ne[0]; ++i0) f(i0, i1, i2, i3);
}

// The values of a tensor as the library stores them, read through its strides
// (dequantized for block types).
DT read_values(const Tensor * t) {
    DT out(t->ne);
    const auto * base = static_cast<const uint8_t *>(t->data);
    auto ptr = [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        return base + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
    };
    if (t->type == DType::F32 || t->type == DType::I32) {
        for_each_index(t->ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
            const uint8_t * p = ptr(i0, i1, i2, i3);
            if (t->type == DType::F32) {
                float x;
                std::memcpy(&x, p, sizeof x);
                out(i0, i1, i2, i3) = x;
            } else {
                int32_t x;
                std::memcpy(&x, p, sizeof x);
                out(i0, i1, i2, i3) = x;
            }
        });
        return out;
    }
    std::vector<float> row(static_cast<size_t>(t->ne[0]));
    for_each_index({1, t->ne[1], t->ne[2], t->ne[3]}, [&](int64_t, int64_t i1, int64_t i2, int64_t i3) {
        toyllm::dequantize_row(t->type, ptr(0, i1, i2, i3), row.data(), t->ne[0]);
        for (int64_t i0 = 0; i0 < t->ne[0]; ++i0) out(i0, i1, i2, i3) = row[static_cast<size_t>(i0)];
    });
    return out;
}

// max|got - ref| / max(max|ref|, 1e-6); infinite reference entries must match exactly.
double normalized_error(const DT & got, const DT & ref) {
    double max_err = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < ref.v.size(); ++i) {
        if (std::isinf(ref.v[i])) {
            if (got.v[i] != ref.v[i]) return std::numeric_limits<double>::infinity();
            continue;
        }
        if (std::isnan(got.v[i])) return std::numeric_limits<double>::infinity();
        max_err = std::max(max_err, std::abs(got.v[i] - ref.v[i]));
        max_ref = std::max(max_ref, std::abs(ref.v[i]));
    }
    return max_err / std::max(max_ref, 1e-6);
}

// ---- the naive reference: one function per op, on logical values ------------------

namespace ref {

DT permute(const DT & a, std::array<int, 4> axes) {
    Ne ne{};
    for (int i = 0; i < 4; ++i) ne[axes[i]] = a.ne[i];
    DT o(ne);
    for_each_index(a.ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const int64_t src[4] = {i0, i1, i2, i3};
        int64_t dst[4];
        for (int i = 0; i < 4; ++i) dst[axes[i]] = src[i];
        o.at(dst) = a.at(src);
    });
    return o;
}

DT reshape(const DT & a, Ne ne) {
    DT o = a;
    o.ne = ne;
    return o;
}

DT slice(const DT & a, Ne begin, Ne ne) {
    DT o(ne);
    for_each_index(ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        o(i0, i1, i2, i3) = a(begin[0] + i0, begin[1] + i1, begin[2] + i2, begin[3] + i3);
    });
    return o;
}

DT get_rows(const DT & table, const DT & ids) {
    DT o({table.ne[0], ids.ne[0], ids.ne[1], 1});
    for (int64_t b = 0; b < ids.ne[1]; ++b)
        for (int64_t t = 0; t < ids.ne[0]; ++t)
            for (int64_t i = 0; i < table.ne[0]; ++i) o(i, t, b) = table(i, static_cast<int64_t>(ids(t, b)));
    return o;
}

// out[n, m] = sum_k a[k, n] b[k, m], a broadcast over b's batch dims.
DT matmul(const DT & a, const DT & b) {
    DT o({a.ne[1], b.ne[1], b.ne[2], b.ne[3]});
    const int64_t r2 = b.ne[2] / a.ne[2], r3 = b.ne[3] / a.ne[3];
    for_each_index(o.ne, [&](int64_t n, int64_t m, int64_t i2, int64_t i3) {
        double s = 0.0;
        for (int64_t k = 0; k < a.ne[0]; ++k) s += a(k, n, i2 / r2, i3 / r3) * b(k, m, i2, i3);
        o(n, m, i2, i3) = s;
    });
    return o;
}

template <class F> DT binary(const DT & a, const DT & b, F f) {
    DT o(a.ne);
    for_each_index(a.ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        o(i0, i1, i2, i3) = f(a(i0, i1, i2, i3), b(i0 % b.ne[0], i1 % b.ne[1], i2 % b.ne[2], i3 % b.ne[3]));
    });
    return o;
}

template <class F> DT unary(const DT & a, F f) {
    DT o = a;
    for (double & x : o.v) x = f(x);
    return o;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

DT sum(const DT & a) {
    DT o({1, 1, 1, 1});
    for (double x : a.v) o.v[0] += x;
    return o;
}

DT sum_to(const DT & a, Ne ne) {
    DT o(ne);
    for_each_index(a.ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        o(i0 % ne[0], i1 % ne[1], i2 % ne[2], i3 % ne[3]) += a(i0, i1, i2, i3);
    });
    return o;
}

DT repeat(const DT & a, Ne ne) {
    DT o(ne);
    for_each_index(ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        o(i0, i1, i2, i3) = a(i0 % a.ne[0], i1 % a.ne[1], i2 % a.ne[2], i3 % a.ne[3]);
    });
    return o;
}

DT softmax(const DT & a) {
    DT o(a.ne);
    for_each_index({1, a.ne[1], a.ne[2], a.ne[3]}, [&](int64_t, int64_t i1, int64_t i2, int64_t i3) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t i = 0; i < a.ne[0]; ++i) m = std::max(m, a(i, i1, i2, i3));
        double s = 0.0;
        for (int64_t i = 0; i < a.ne[0]; ++i) s += std::exp(a(i, i1, i2, i3) - m);
        for (int64_t i = 0; i < a.ne[0]; ++i) o(i, i1, i2, i3) = std::exp(a(i, i1, i2, i3) - m) / s;
    });
    return o;
}

DT rms_norm(const DT & x, const DT * w, double eps) {
    DT o(x.ne);
    for_each_index({1, x.ne[1], x.ne[2], x.ne[3]}, [&](int64_t, int64_t i1, int64_t i2, int64_t i3) {
        double ss = 0.0;
        for (int64_t i = 0; i < x.ne[0]; ++i) ss += x(i, i1, i2, i3) * x(i, i1, i2, i3);
        const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.ne[0]) + eps);
        for (int64_t i = 0; i < x.ne[0]; ++i) o(i, i1, i2, i3) = x(i, i1, i2, i3) * r * (w ? w->v[static_cast<size_t>(i)] : 1.0);
    });
    return o;
}

// Pair i turns by pos * freq_scale * freq_base^(-2i / n_rot) / factor[i].
DT rope(const DT & x, const DT & pos, const toyllm::RopeConfig & cfg, const DT * factors) {
    DT o = x;
    const int64_t half = cfg.n_rot / 2;
    const bool neox = cfg.mode == toyllm::RopeMode::NEOX;
    for_each_index({1, x.ne[1], x.ne[2], x.ne[3]}, [&](int64_t, int64_t h, int64_t t, int64_t b) {
        for (int64_t i = 0; i < half; ++i) {
            const double ff = factors ? factors->v[static_cast<size_t>(i)] : 1.0;
            const double angle = pos.v[static_cast<size_t>(t)] * cfg.freq_scale *
                                 std::pow(static_cast<double>(cfg.freq_base), -2.0 * static_cast<double>(i) / cfg.n_rot) / ff;
            const int64_t ia = neox ? i : 2 * i;
            const int64_t ib = neox ? i + half : 2 * i + 1;
            const double xa = x(ia, h, t, b), xb = x(ib, h, t, b);
            o(ia, h, t, b) = xa * std::cos(angle) - xb * std::sin(angle);
            o(ib, h, t, b) = xa * std::sin(angle) + xb * std::cos(angle);
        }
    });
    return o;
}

// q [D, H, T, B], k and v [D, G, S, B]; query head h uses kv head h / (H / G); query t
// sees keys 0 .. S - T + t when causal.
DT attention(const DT & q, const DT & k, const DT & v, double scale, bool causal) {
    const int64_t D = q.ne[0], H = q.ne[1], T = q.ne[2], B = q.ne[3];
    const int64_t G = k.ne[1], S = k.ne[2];
    DT o(q.ne);
    std::vector<double> p(static_cast<size_t>(S));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t kv = h / (H / G);
                const int64_t n_keys = causal ? S - T + t + 1 : S;
                double m = -std::numeric_limits<double>::infinity();
                for (int64_t s = 0; s < n_keys; ++s) {
                    double d = 0.0;
                    for (int64_t i = 0; i < D; ++i) d += q(i, h, t, b) * k(i, kv, s, b);
                    p[static_cast<size_t>(s)] = d * scale;
                    m = std::max(m, d * scale);
                }
                double z = 0.0;
                for (int64_t s = 0; s < n_keys; ++s) z += std::exp(p[static_cast<size_t>(s)] - m);
                for (int64_t s = 0; s < n_keys; ++s) {
                    const double w = std::exp(p[static_cast<size_t>(s)] - m) / z;
                    for (int64_t i = 0; i < D; ++i) o(i, h, t, b) += w * v(i, kv, s, b);
                }
            }
    return o;
}

DT causal_mask(const DT & s, int64_t n_past) {
    DT o = s;
    for_each_index(s.ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        if (i0 > n_past + i1) o(i0, i1, i2, i3) = -std::numeric_limits<double>::infinity();
    });
    return o;
}

DT cross_entropy(const DT & logits, const DT & targets, int32_t ignore) {
    double total = 0.0;
    int64_t n = 0;
    for_each_index({1, logits.ne[1], logits.ne[2], logits.ne[3]}, [&](int64_t, int64_t i1, int64_t i2, int64_t i3) {
        const auto target = static_cast<int32_t>(targets.v[static_cast<size_t>(i1 + logits.ne[1] * (i2 + logits.ne[2] * i3))]);
        if (target == ignore) return;
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t i = 0; i < logits.ne[0]; ++i) m = std::max(m, logits(i, i1, i2, i3));
        double z = 0.0;
        for (int64_t i = 0; i < logits.ne[0]; ++i) z += std::exp(logits(i, i1, i2, i3) - m);
        total += std::log(z) + m - logits(target, i1, i2, i3);
        ++n;
    });
    DT o({1, 1, 1, 1});
    o.v[0] = n > 0 ? total / static_cast<double>(n) : 0.0;
    return o;
}

DT concat(const DT & a, const DT & b, int dim) {
    Ne ne = a.ne;
    ne[dim] += b.ne[dim];
    DT o(ne);
    for_each_index(ne, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        int64_t i[4] = {i0, i1, i2, i3};
        const DT * src = &a;
        if (i[dim] >= a.ne[dim]) {
            i[dim] -= a.ne[dim];
            src = &b;
        }
        o(i0, i1, i2, i3) = src->at(i);
    });
    return o;
}

}  // namespace ref

// ---- Dual: builds the graph and the reference side by side -------------------------

// A value: the library's node (nullptr when only the reference is computed) and the
// reference's logical values.
struct V {
    Tensor * t = nullptr;
    DT r;
};

struct LeafOpts {
    bool param = false;  // trainable: the gradient mode checks its gradient
    double lo = -1.0;    // uniform random values in [lo, hi)
    double hi = 1.0;
};

class Dual {
  public:
    struct Leaf {
        Tensor * t;
        DT value;  // what the library's leaf holds (dequantized for block types)
        bool param;
        std::string name;
    };

    Dual(Context * ctx, uint32_t seed) : ctx_(ctx), rng_(seed) {}

    bool building() const { return ctx_ != nullptr; }
    Context & ctx() { return *ctx_; }

    // From now on leaves return their recorded (possibly perturbed) values and no nodes
    // are built; call before each replay of the case.
    void replay() {
        ctx_ = nullptr;
        next_ = 0;
    }
    std::vector<Leaf> & leaves() { return leaves_; }

    V f32(const std::string & name, std::initializer_list<int64_t> ne, LeafOpts o = {}) {
        if (!building()) return recorded();
        const Ne n = pad_ne(ne);
        Tensor * t = ctx_->new_tensor(DType::F32, n, name);
        ctx_->alloc(t);
        DT r(n);
        std::uniform_real_distribution<double> u(o.lo, o.hi);
        for (size_t i = 0; i < r.v.size(); ++i) {
            const auto x = static_cast<float>(u(rng_));
            t->data_as<float>()[i] = x;
            r.v[i] = x;
        }
        if (o.param) ctx_->set_param(t);
        leaves_.push_back({t, r, o.param, name});
        return {t, r};
    }

    // A weight stored in `type`: random f32 values quantized row by row; the reference
    // holds the dequantized stored values.
    V weight(DType type, const std::string & name, std::initializer_list<int64_t> ne, LeafOpts o = {}) {
        if (type == DType::F32) return f32(name, ne, o);
        if (!building()) return recorded();
        const Ne n = pad_ne(ne);
        Tensor * t = ctx_->new_tensor(type, n, name);
        ctx_->alloc(t);
        std::uniform_real_distribution<double> u(o.lo, o.hi);
        std::vector<float> row(static_cast<size_t>(n[0]));
        for (int64_t r = 0; r < t->n_rows(); ++r) {
            for (float & x : row) x = static_cast<float>(u(rng_));
            toyllm::quantize_row(type, row.data(), static_cast<uint8_t *>(t->data) + r * t->nb[1], n[0]);
        }
        DT r = read_values(t);
        leaves_.push_back({t, r, false, name});
        return {t, r};
    }

    V i32(const std::string & name, std::initializer_list<int64_t> ne, const std::vector<int32_t> & values) {
        if (!building()) return recorded();
        const Ne n = pad_ne(ne);
        Tensor * t = ctx_->new_tensor(DType::I32, n, name);
        ctx_->alloc(t);
        DT r(n);
        EXPECT_EQ(values.size(), r.v.size()) << name;
        for (size_t i = 0; i < r.v.size() && i < values.size(); ++i) {
            t->data_as<int32_t>()[i] = values[i];
            r.v[i] = values[i];
        }
        leaves_.push_back({t, r, false, name});
        return {t, r};
    }

    // Random ids in [0, n_rows).
    V ids(const std::string & name, std::initializer_list<int64_t> ne, int32_t n_rows) {
        if (!building()) return recorded();
        const Ne n = pad_ne(ne);
        std::vector<int32_t> values(static_cast<size_t>(n[0] * n[1] * n[2] * n[3]));
        std::uniform_int_distribution<int32_t> u(0, n_rows - 1);
        for (int32_t & x : values) x = u(rng_);
        return i32(name, ne, values);
    }

  private:
    V recorded() { return {nullptr, leaves_.at(next_++).value}; }

    Context * ctx_;
    std::mt19937 rng_;
    std::vector<Leaf> leaves_;
    size_t next_ = 0;
};

// Records the library's node (when building) and computes the reference.
template <class Build, class Ref> V dual_op(Dual & D, Build build, Ref reference) {
    V o;
    if (D.building()) o.t = build(D.ctx());
    o.r = reference();
    return o;
}

V reshape(Dual & D, const V & a, std::initializer_list<int64_t> ne) {
    const Ne n = pad_ne(ne);
    return dual_op(D, [&](Context & c) { return toyllm::reshape(c, a.t, n); }, [&] { return ref::reshape(a.r, n); });
}
V permute(Dual & D, const V & a, std::array<int, 4> axes) {
    return dual_op(D, [&](Context & c) { return toyllm::permute(c, a.t, axes); }, [&] { return ref::permute(a.r, axes); });
}
V transpose(Dual & D, const V & a) {
    return dual_op(D, [&](Context & c) { return toyllm::transpose(c, a.t); }, [&] { return ref::permute(a.r, {1, 0, 2, 3}); });
}
V slice(Dual & D, const V & a, Ne begin, std::initializer_list<int64_t> ne) {
    const Ne n = pad_ne(ne);
    return dual_op(D, [&](Context & c) { return toyllm::slice(c, a.t, begin, n); }, [&] { return ref::slice(a.r, begin, n); });
}
V cont(Dual & D, const V & a) {
    return dual_op(D, [&](Context & c) { return toyllm::cont(c, a.t); }, [&] { return a.r; });
}
V get_rows(Dual & D, const V & table, const V & ids) {
    return dual_op(D, [&](Context & c) { return toyllm::get_rows(c, table.t, ids.t); }, [&] { return ref::get_rows(table.r, ids.r); });
}
V matmul(Dual & D, const V & a, const V & b) {
    return dual_op(D, [&](Context & c) { return toyllm::matmul(c, a.t, b.t); }, [&] { return ref::matmul(a.r, b.r); });
}
V add(Dual & D, const V & a, const V & b) {
    return dual_op(D, [&](Context & c) { return toyllm::add(c, a.t, b.t); },
                   [&] { return ref::binary(a.r, b.r, [](double x, double y) { return x + y; }); });
}
V mul(Dual & D, const V & a, const V & b) {
    return dual_op(D, [&](Context & c) { return toyllm::mul(c, a.t, b.t); },
                   [&] { return ref::binary(a.r, b.r, [](double x, double y) { return x * y; }); });
}
V scale(Dual & D, const V & a, float s) {
    return dual_op(D, [&](Context & c) { return toyllm::scale(c, a.t, s); },
                   [&] { return ref::unary(a.r, [s](double x) { return x * static_cast<double>(s); }); });
}
V sum(Dual & D, const V & a) {
    return dual_op(D, [&](Context & c) { return toyllm::sum(c, a.t); }, [&] { return ref::sum(a.r); });
}
V mean(Dual & D, const V & a) {
    return dual_op(D, [&](Context & c) { return toyllm::mean(c, a.t); }, [&] {
        DT s = ref::sum(a.r);
        s.v[0] /= static_cast<double>(a.r.v.size());
        return s;
    });
}
// A tensor that only lends its shape (sum_to, repeat); not part of any graph.
Tensor * shape_only(Context & c, Ne ne) { return c.new_tensor(DType::F32, ne, "shape"); }
V sum_to(Dual & D, const V & a, std::initializer_list<int64_t> ne) {
    const Ne n = pad_ne(ne);
    return dual_op(D, [&](Context & c) { return toyllm::sum_to(c, a.t, shape_only(c, n)); }, [&] { return ref::sum_to(a.r, n); });
}
V repeat(Dual & D, const V & a, std::initializer_list<int64_t> ne) {
    const Ne n = pad_ne(ne);
    return dual_op(D, [&](Context & c) { return toyllm::repeat(c, a.t, shape_only(c, n)); }, [&] { return ref::repeat(a.r, n); });
}
V silu(Dual & D, const V & a) {
    return dual_op(D, [&](Context & c) { return toyllm::silu(c, a.t); }, [&] { return ref::unary(a.r, ref::silu); });
}
V swiglu(Dual & D, const V & gate, const V & up) {
    return dual_op(D, [&](Context & c) { return toyllm::swiglu(c, gate.t, up.t); },
                   [&] { return ref::binary(gate.r, up.r, [](double g, double u) { return ref::silu(g) * u; }); });
}
V softmax(Dual & D, const V & a) {
    return dual_op(D, [&](Context & c) { return toyllm::softmax(c, a.t); }, [&] { return ref::softmax(a.r); });
}
V rms_norm(Dual & D, const V & x, const V * w, float eps = 1e-5f) {
    return dual_op(D, [&](Context & c) { return toyllm::rms_norm(c, x.t, w ? w->t : nullptr, eps); },
                   [&] { return ref::rms_norm(x.r, w ? &w->r : nullptr, eps); });
}
V rope(Dual & D, const V & x, const V & pos, const toyllm::RopeConfig & cfg, const V * factors = nullptr) {
    return dual_op(D, [&](Context & c) { return toyllm::rope(c, x.t, pos.t, cfg, factors ? factors->t : nullptr); },
                   [&] { return ref::rope(x.r, pos.r, cfg, factors ? &factors->r : nullptr); });
}
V attention(Dual & D, const V & q, const V & k, const V & v, const toyllm::AttentionConfig & cfg) {
    const double s = cfg.scale != 0.0f ? cfg.scale : 1.0 / std::sqrt(static_cast<double>(q.r.ne[0]));
    return dual_op(D, [&](Context & c) { return toyllm::attention(c, q.t, k.t, v.t, cfg); },
                   [&] { return ref::attention(q.r, k.r, v.r, s, cfg.causal); });
}
V causal_mask(Dual & D, const V & scores, int64_t n_past) {
    return dual_op(D, [&](Context & c) { return toyllm::causal_mask(c, scores.t, n_past); },
                   [&] { return ref::causal_mask(scores.r, n_past); });
}
V cross_entropy(Dual & D, const V & logits, const V & targets, int32_t ignore = -1) {
    return dual_op(D, [&](Context & c) { return toyllm::cross_entropy(c, logits.t, targets.t, ignore); },
                   [&] { return ref::cross_entropy(logits.r, targets.r, ignore); });
}
V concat(Dual & D, const V & a, const V & b, int dim) {
    return dual_op(D, [&](Context & c) { return toyllm::concat(c, a.t, b.t, dim); }, [&] { return ref::concat(a.r, b.r, dim); });
}

std::vector<int32_t> iota_from(int32_t start, int n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = start + i;
    return v;
}

// ---- the cases ----------------------------------------------------------------------

using Body = std::function<V(Dual &)>;

struct OpCase {
    std::string name;  // letters, digits and '_' (a gtest parameter name)
    Body body;
    double tol = kTolF32;     // forward
    int max_fd_samples = 256; // gradient mode: elements per param checked by FD
};

void PrintTo(const OpCase & c, std::ostream * os) { *os << c.name; }

std::string case_name(const ::testing::TestParamInfo<OpCase> & info) { return info.param.name; }

// Composed attention as a reference for the fused op (attention.cpp's comment):
// per head P = softmax(causal_mask(scale * k.q)), out = v.P, GQA through matmul's
// batch broadcast. q [D, H, T, B], k, v [D, G, S, B] -> [D, H, T, B].
V composed_attention(Dual & D, const V & q, const V & k, const V & v) {
    const int64_t S = k.r.ne[2], T = q.r.ne[2];
    const V qh = permute(D, q, {0, 2, 1, 3});   // [D, T, H, B]
    const V kh = permute(D, k, {0, 2, 1, 3});   // [D, S, G, B]
    const V vt = permute(D, v, {1, 2, 0, 3});   // [S, D, G, B]
    V scores = matmul(D, kh, qh);               // [S, T, H, B]
    scores = scale(D, scores, 1.0f / std::sqrt(static_cast<float>(q.r.ne[0])));
    const V p = softmax(D, causal_mask(D, scores, S - T));
    const V o = matmul(D, vt, p);               // [D, T, H, B]
    return permute(D, o, {0, 2, 1, 3});
}

// The Llama block stack of SYSTEM.md, small: n_layer blocks of
//   h = x + W_o attn(rope(W_q n1), rope(W_k n1), W_v n1),  n1 = rms_norm(x) * attn_norm
//   x = h + W_down (silu(W_gate n2) * W_up n2),           n2 = rms_norm(h) * ffn_norm
// then the final norm, the output projection and cross-entropy against random targets.
struct StackConfig {
    int64_t n_embd = 32;
    int64_t n_head = 4;
    int64_t n_head_kv = 2;
    int64_t head_dim = 8;
    int64_t n_ff = 48;
    int64_t n_vocab = 37;
    int64_t n_layer = 2;
    int64_t T = 5;
    int64_t B = 2;
};

struct StackOut {
    V logits;  // [n_vocab, T, B]
    V loss;    // [1]
};

StackOut llama_stack(Dual & D, const StackConfig & c = {}) {
    const LeafOpts w{.param = true, .lo = -0.25, .hi = 0.25};
    const LeafOpts norm{.param = true, .lo = 0.8, .hi = 1.2};
    const V tok_embd = D.f32("token_embd", {c.n_embd, c.n_vocab}, {.param = true});
    const V tokens = D.ids("tokens", {c.T, c.B}, static_cast<int32_t>(c.n_vocab));
    const V targets = D.ids("targets", {c.T, c.B}, static_cast<int32_t>(c.n_vocab));
    const V pos = D.i32("pos", {c.T}, iota_from(0, static_cast<int>(c.T)));
    const toyllm::RopeConfig rope_cfg{.mode = toyllm::RopeMode::NORMAL, .n_rot = static_cast<int32_t>(c.head_dim)};
    V x = get_rows(D, tok_embd, tokens);  // [n_embd, T, B]
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        const V attn_norm = D.f32(p + "attn_norm", {c.n_embd}, norm);
        const V wq = D.f32(p + "attn_q", {c.n_embd, c.n_head * c.head_dim}, w);
        const V wk = D.f32(p + "attn_k", {c.n_embd, c.n_head_kv * c.head_dim}, w);
        const V wv = D.f32(p + "attn_v", {c.n_embd, c.n_head_kv * c.head_dim}, w);
        const V wo = D.f32(p + "attn_output", {c.n_head * c.head_dim, c.n_embd}, w);
        const V ffn_norm = D.f32(p + "ffn_norm", {c.n_embd}, norm);
        const V w_gate = D.f32(p + "ffn_gate", {c.n_embd, c.n_ff}, w);
        const V w_up = D.f32(p + "ffn_up", {c.n_embd, c.n_ff}, w);
        const V w_down = D.f32(p + "ffn_down", {c.n_ff, c.n_embd}, w);

        const V n1 = rms_norm(D, x, &attn_norm);
        const V q = rope(D, reshape(D, matmul(D, wq, n1), {c.head_dim, c.n_head, c.T, c.B}), pos, rope_cfg);
        const V k = rope(D, reshape(D, matmul(D, wk, n1), {c.head_dim, c.n_head_kv, c.T, c.B}), pos, rope_cfg);
        const V v = reshape(D, matmul(D, wv, n1), {c.head_dim, c.n_head_kv, c.T, c.B});
        const V heads = reshape(D, attention(D, q, k, v, {.causal = true}), {c.n_head * c.head_dim, c.T, c.B});
        const V h = add(D, x, matmul(D, wo, heads));
        const V n2 = rms_norm(D, h, &ffn_norm);
        x = add(D, h, matmul(D, w_down, swiglu(D, matmul(D, w_gate, n2), matmul(D, w_up, n2))));
    }
    const V out_norm = D.f32("output_norm", {c.n_embd}, norm);
    const V w_out = D.f32("output", {c.n_embd, c.n_vocab}, w);
    StackOut out;
    out.logits = matmul(D, w_out, rms_norm(D, x, &out_norm));
    out.loss = cross_entropy(D, out.logits, targets);
    if (D.building()) {
        out.logits.t->name = "logits";
        out.loss.t->name = "loss";
    }
    return out;
}

std::string type_tag(DType t) { return std::string(toyllm::dtype_name(t)); }

// matmul cases: every weight type, decode (M = 1) and prefill (M = 7) shapes.
void add_matmul_cases(std::vector<OpCase> & cases) {
    struct TypeK {
        DType type;
        int64_t k_decode, k_prefill;  // reduction lengths (multiples of the block size)
        double tol;
    };
    const TypeK types[] = {
        {DType::F32, 37, 37, kTolF32},     {DType::F16, 37, 45, kTolHalf},    {DType::BF16, 37, 45, kTolHalf},
        {DType::Q8_0, 96, 160, kTolQuant}, {DType::Q4_0, 96, 160, kTolQuant}, {DType::Q4_K, 256, 512, kTolQuant},
        {DType::Q6_K, 256, 512, kTolQuant},
    };
    for (const TypeK & tk : types) {
        for (int64_t M : {int64_t{1}, int64_t{7}}) {
            const int64_t K = M == 1 ? tk.k_decode : tk.k_prefill;
            const DType type = tk.type;
            cases.push_back({"matmul_" + type_tag(type) + "_K" + std::to_string(K) + "_M" + std::to_string(M),
                             [=](Dual & D) {
                                 const V a = D.weight(type, "a", {K, 13});
                                 const V b = D.f32("b", {K, M});
                                 return matmul(D, a, b);
                             },
                             tk.tol});
        }
        const DType type = tk.type;
        const int64_t K = tk.k_decode;
        // Batched: a broadcast over b's batch dims, both ways.
        cases.push_back({"matmul_" + type_tag(type) + "_batched_a_1x2_b_3x2",
                         [=](Dual & D) {
                             const V a = D.weight(type, "a", {K, 11, 1, 2});
                             const V b = D.f32("b", {K, 5, 3, 2});
                             return matmul(D, a, b);
                         },
                         tk.tol});
        cases.push_back({"matmul_" + type_tag(type) + "_batched_a_3x1_b_3x2",
                         [=](Dual & D) {
                             const V a = D.weight(type, "a", {K, 11, 3, 1});
                             const V b = D.f32("b", {K, 5, 3, 2});
                             return matmul(D, a, b);
                         },
                         tk.tol});
        // b strided: a transposed view (columns 4 bytes * M apart) and a window of a wider leaf.
        cases.push_back({"matmul_" + type_tag(type) + "_b_transposed",
                         [=](Dual & D) {
                             const V a = D.weight(type, "a", {K, 9});
                             const V bt = D.f32("bt", {6, K});
                             return matmul(D, a, transpose(D, bt));
                         },
                         tk.tol});
        cases.push_back({"matmul_" + type_tag(type) + "_b_sliced",
                         [=](Dual & D) {
                             const V a = D.weight(type, "a", {K, 9});
                             const V big = D.f32("big", {K + 7, 8, 2});
                             return matmul(D, a, slice(D, big, {5, 1, 1, 0}, {K, 6, 1}));
                         },
                         tk.tol});
        // a rows taken from the middle of a bigger weight (an offset view of whole rows).
        cases.push_back({"matmul_" + type_tag(type) + "_a_row_window_M3",
                         [=](Dual & D) {
                             const V big = D.weight(type, "big", {K, 17});
                             const V b = D.f32("b", {K, 3});
                             return matmul(D, slice(D, big, {0, 4, 0, 0}, {K, 10}), b);
                         },
                         tk.tol});
    }
    cases.push_back({"matmul_f32_a_transposed_M1", [](Dual & D) {
                         const V at = D.f32("at", {13, 37});
                         return matmul(D, transpose(D, at), D.f32("b", {37, 1}));
                     }});
    cases.push_back({"matmul_f32_a_transposed_M7", [](Dual & D) {
                         const V at = D.f32("at", {13, 37});
                         return matmul(D, transpose(D, at), D.f32("b", {37, 7}));
                     }});
    cases.push_back({"matmul_f32_a_permuted_batched", [](Dual & D) {
                         const V a = D.f32("a", {19, 2, 11});  // [K, B, N] -> [K, N, B]
                         const V b = D.f32("b", {19, 4, 6});
                         return matmul(D, permute(D, a, {0, 2, 1, 3}), b);
                     }});
    // a's batch dims > 1 and smaller than b's: b's entry i2 uses a's entry i2 / (B2' / B2),
    // GQA's grouping (not the modulo tiling of add).
    cases.push_back({"matmul_f32_batched_groups_a_2x2_b_4x6", [](Dual & D) {
                         return matmul(D, D.f32("a", {9, 5, 2, 2}), D.f32("b", {9, 3, 4, 6}));
                     }});
    cases.push_back({"matmul_q8_0_batched_groups_a_2x1_b_4x1", [](Dual & D) {
                         return matmul(D, D.weight(DType::Q8_0, "a", {64, 5, 2}), D.f32("b", {64, 3, 4}));
                     }, kTolQuant});
    cases.push_back({"matmul_f32_a_dim0_window", [](Dual & D) {
                         const V big = D.f32("big", {23, 9});
                         return matmul(D, slice(D, big, {3, 0, 0, 0}, {17, 9}), D.f32("b", {17, 4}));
                     }});
    cases.push_back({"matmul_f32_large_M33_N70_K129", [](Dual & D) {
                         return matmul(D, D.f32("a", {129, 70}), D.f32("b", {129, 33}));
                     }});
}

std::vector<OpCase> forward_cases() {
    std::vector<OpCase> c;
    using toyllm::RopeMode;

    // views and cont
    c.push_back({"cont_transpose", [](Dual & D) { return cont(D, transpose(D, D.f32("x", {7, 5}))); }});
    c.push_back({"cont_permute_4d", [](Dual & D) { return cont(D, permute(D, D.f32("x", {3, 5, 2, 4}), {2, 0, 3, 1})); }});
    c.push_back({"cont_slice", [](Dual & D) { return cont(D, slice(D, D.f32("x", {9, 6, 3}), {2, 1, 1, 0}, {5, 4, 2})); }});
    c.push_back({"cont_slice_of_transpose", [](Dual & D) {
                     return cont(D, slice(D, transpose(D, D.f32("x", {9, 7})), {1, 2, 0, 0}, {5, 3}));
                 }});
    c.push_back({"reshape_feeds_add", [](Dual & D) {
                     return add(D, reshape(D, D.f32("x", {6, 5}), {3, 10}), D.f32("y", {3, 10}));
                 }});
    c.push_back({"permute_feeds_mul", [](Dual & D) {
                     return mul(D, permute(D, D.f32("x", {5, 3, 4}), {1, 2, 0, 3}), D.f32("y", {4, 5, 3}));
                 }});
    c.push_back({"transpose_of_reshape_feeds_softmax", [](Dual & D) {
                     return softmax(D, transpose(D, reshape(D, D.f32("x", {15, 2}), {5, 6})));
                 }});
    c.push_back({"slice_of_slice_feeds_scale", [](Dual & D) {
                     const V s = slice(D, D.f32("x", {11, 9, 3}), {1, 2, 1, 0}, {9, 6, 2});
                     return scale(D, slice(D, s, {3, 1, 0, 0}, {5, 4, 2}), 0.37f);
                 }});

    // get_rows
    c.push_back({"get_rows_f32", [](Dual & D) {
                     return get_rows(D, D.f32("table", {9, 11}), D.i32("ids", {5, 2}, {3, 0, 10, 3, 7, 7, 1, 3, 10, 0}));
                 }});
    for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
        const int64_t n = toyllm::dtype_info(t).block_size == 256 ? 256 : 64;
        c.push_back({"get_rows_" + type_tag(t), [=](Dual & D) {
                         return get_rows(D, D.weight(t, "table", {n, 7}), D.i32("ids", {4}, {6, 0, 6, 2}));
                     }});
    }
    c.push_back({"get_rows_table_row_window", [](Dual & D) {
                     const V table = slice(D, D.f32("table", {9, 12}), {0, 3, 0, 0}, {9, 8});
                     return get_rows(D, table, D.i32("ids", {3}, {7, 0, 4}));
                 }});

    add_matmul_cases(c);

    // add, mul with broadcasting
    c.push_back({"add_same_shape", [](Dual & D) { return add(D, D.f32("a", {7, 5, 3}), D.f32("b", {7, 5, 3})); }});
    c.push_back({"add_broadcast_rows", [](Dual & D) { return add(D, D.f32("a", {7, 5, 3, 2}), D.f32("b", {7, 1, 3, 1})); }});
    c.push_back({"add_broadcast_cols", [](Dual & D) { return add(D, D.f32("a", {7, 5, 3, 2}), D.f32("b", {1, 5, 1, 2})); }});
    c.push_back({"add_broadcast_tile_dim0", [](Dual & D) { return add(D, D.f32("a", {9, 4}), D.f32("b", {3, 2})); }});
    c.push_back({"add_transposed_a_sliced_b", [](Dual & D) {
                     const V a = transpose(D, D.f32("a", {5, 7}));
                     const V b = slice(D, D.f32("b", {9, 3}), {2, 1, 0, 0}, {7, 1});
                     return add(D, a, b);
                 }});
    c.push_back({"mul_broadcast_rows", [](Dual & D) { return mul(D, D.f32("a", {7, 5, 3}), D.f32("b", {7})); }});
    c.push_back({"mul_transposed_both", [](Dual & D) {
                     return mul(D, transpose(D, D.f32("a", {5, 7, 2})), transpose(D, D.f32("b", {1, 7})));
                 }});

    // scale, sum, mean, sum_to, repeat
    c.push_back({"scale_transposed", [](Dual & D) { return scale(D, transpose(D, D.f32("x", {6, 7})), -0.7f); }});
    c.push_back({"sum_contiguous", [](Dual & D) { return sum(D, D.f32("x", {13, 7, 3})); }});
    c.push_back({"sum_slice", [](Dual & D) { return sum(D, slice(D, D.f32("x", {13, 7, 3}), {2, 1, 1, 0}, {9, 5, 2})); }});
    c.push_back({"mean_permuted", [](Dual & D) { return mean(D, permute(D, D.f32("x", {5, 3, 7}), {2, 0, 1, 3})); }});
    c.push_back({"sum_to_rows", [](Dual & D) { return sum_to(D, D.f32("x", {6, 5, 4, 3}), {6, 1, 4, 1}); }});
    c.push_back({"sum_to_cols", [](Dual & D) { return sum_to(D, D.f32("x", {6, 5, 4, 3}), {1, 5, 1, 3}); }});
    c.push_back({"sum_to_tiles_transposed", [](Dual & D) { return sum_to(D, transpose(D, D.f32("x", {6, 9})), {3, 2}); }});
    c.push_back({"repeat_rows", [](Dual & D) { return repeat(D, D.f32("x", {3, 1, 2}), {6, 5, 4}); }});
    c.push_back({"repeat_transposed", [](Dual & D) { return repeat(D, transpose(D, D.f32("x", {2, 3})), {3, 4, 3}); }});

    // silu, swiglu, softmax
    c.push_back({"silu_slice", [](Dual & D) {
                     return silu(D, slice(D, D.f32("x", {11, 5}, {.lo = -6, .hi = 6}), {1, 1, 0, 0}, {9, 3}));
                 }});
    c.push_back({"silu_transposed", [](Dual & D) { return silu(D, transpose(D, D.f32("x", {5, 7}, {.lo = -6, .hi = 6}))); }});
    c.push_back({"swiglu", [](Dual & D) { return swiglu(D, D.f32("g", {13, 5}, {.lo = -4, .hi = 4}), D.f32("u", {13, 5})); }});
    c.push_back({"swiglu_views", [](Dual & D) {
                     const V g = transpose(D, D.f32("g", {5, 13}, {.lo = -4, .hi = 4}));
                     const V u = slice(D, D.f32("u", {15, 6}), {2, 1, 0, 0}, {13, 5});
                     return swiglu(D, g, u);
                 }});
    c.push_back({"softmax", [](Dual & D) { return softmax(D, D.f32("x", {13, 5, 2}, {.lo = -5, .hi = 5})); }});
    c.push_back({"softmax_transposed", [](Dual & D) { return softmax(D, transpose(D, D.f32("x", {5, 13}, {.lo = -5, .hi = 5}))); }});
    c.push_back({"softmax_row_window", [](Dual & D) {
                     return softmax(D, slice(D, D.f32("x", {17, 6}, {.lo = -30, .hi = 30}), {0, 2, 0, 0}, {17, 3}));
                 }});

    // rms_norm
    c.push_back({"rms_norm_no_weight", [](Dual & D) { return rms_norm(D, D.f32("x", {19, 5, 2}), nullptr); }});
    c.push_back({"rms_norm_weight", [](Dual & D) {
                     const V w = D.f32("w", {19}, {.lo = 0.5, .hi = 1.5});
                     return rms_norm(D, D.f32("x", {19, 5, 2}), &w);
                 }});
    c.push_back({"rms_norm_weight_row_slice", [](Dual & D) {
                     const V w = D.f32("w", {19}, {.lo = 0.5, .hi = 1.5});
                     return rms_norm(D, slice(D, D.f32("x", {19, 9}), {0, 2, 0, 0}, {19, 5}), &w);
                 }});
    c.push_back({"rms_norm_strided_weight", [](Dual & D) {
                     // The weight is column 1 of a [3, 19] leaf: 19 values 12 bytes apart.
                     const V w = transpose(D, slice(D, D.f32("w3", {3, 19}, {.lo = 0.5, .hi = 1.5}), {1, 0, 0, 0}, {1, 19}));
                     return rms_norm(D, D.f32("x", {19, 4}), &w);
                 }});
    c.push_back({"rms_norm_transposed", [](Dual & D) { return rms_norm(D, transpose(D, D.f32("x", {5, 19})), nullptr, 1e-3f); }});

    // rope
    struct RopeCase {
        const char * name;
        RopeMode mode;
        int64_t head_dim;
        int32_t n_rot;
        int32_t pos0;
        bool factors;
        float freq_scale;
    };
    const RopeCase ropes[] = {
        {"rope_normal", RopeMode::NORMAL, 8, 8, 0, false, 1.0f},
        {"rope_neox", RopeMode::NEOX, 8, 8, 0, false, 1.0f},
        {"rope_normal_partial_nrot6_hd10", RopeMode::NORMAL, 10, 6, 3, false, 1.0f},
        {"rope_neox_partial_nrot6_hd10", RopeMode::NEOX, 10, 6, 3, false, 1.0f},
        {"rope_normal_freq_factors_pos17", RopeMode::NORMAL, 12, 12, 17, true, 1.0f},
        {"rope_neox_freq_factors_scale05_pos29", RopeMode::NEOX, 12, 8, 29, true, 0.5f},
    };
    for (const RopeCase & rc : ropes) {
        c.push_back({rc.name, [rc](Dual & D) {
                         const toyllm::RopeConfig cfg{.mode = rc.mode, .n_rot = rc.n_rot, .freq_base = 10000.0f, .freq_scale = rc.freq_scale};
                         const V x = D.f32("x", {rc.head_dim, 3, 5, 2});
                         const V pos = D.i32("pos", {5}, iota_from(rc.pos0, 5));
                         if (!rc.factors) return rope(D, x, pos, cfg);
                         const V ff = D.f32("freq_factors", {rc.n_rot / 2}, {.lo = 1.0, .hi = 4.0});
                         return rope(D, x, pos, cfg, &ff);
                     }});
    }
    c.push_back({"rope_normal_permuted_input_shuffled_pos", [](Dual & D) {
                     const toyllm::RopeConfig cfg{.mode = RopeMode::NORMAL, .n_rot = 6, .freq_base = 500.0f};
                     const V x = permute(D, D.f32("x", {6, 5, 3}), {0, 2, 1, 3});  // [hd, T, H] -> [hd, H, T]
                     return rope(D, x, D.i32("pos", {5}, {9, 2, 30, 0, 4}), cfg);
                 }});
    c.push_back({"rope_normal_strided_freq_factors", [](Dual & D) {
                     const toyllm::RopeConfig cfg{.mode = RopeMode::NORMAL, .n_rot = 8};
                     const V ff = transpose(D, slice(D, D.f32("ff2", {2, 4}, {.lo = 1.0, .hi = 4.0}), {1, 0, 0, 0}, {1, 4}));
                     return rope(D, D.f32("x", {8, 2, 3}), D.i32("pos", {3}, {2, 3, 4}), cfg, &ff);
                 }});
    c.push_back({"rope_neox_strided_dim0", [](Dual & D) {
                     const toyllm::RopeConfig cfg{.mode = RopeMode::NEOX, .n_rot = 4};
                     const V x = permute(D, D.f32("x", {3, 6, 2}), {2, 0, 1, 3});  // [T, hd, H] -> [hd, H, T]
                     return rope(D, x, D.i32("pos", {3}, {4, 5, 6}), cfg);
                 }});

    // attention
    struct AttnCase {
        const char * name;
        int64_t D, H, G, T, S, B;
        bool causal;
        float scale;
    };
    const AttnCase attns[] = {
        {"attention_causal_T_eq_S", 8, 2, 2, 6, 6, 1, true, 0.0f},
        {"attention_causal_cached_S_gt_T", 8, 2, 2, 3, 7, 2, true, 0.0f},
        {"attention_decode_T1_S9", 6, 4, 2, 1, 9, 1, true, 0.0f},
        // Decode's key chunks (64 keys) and head-dim chunks (32 values), with their tails.
        {"attention_decode_gqa_chunks", 72, 9, 3, 1, 300, 2, true, 0.0f},
        {"attention_noncausal", 5, 3, 3, 4, 7, 2, false, 0.0f},
        {"attention_gqa_H4_G2", 8, 4, 2, 5, 5, 2, true, 0.0f},
        {"attention_gqa_H4_G1_cached", 7, 4, 1, 3, 6, 1, true, 0.3f},
        // Past the kernel's 64-query blocks: later blocks reach more keys.
        {"attention_query_blocks_causal_gqa", 8, 4, 2, 130, 140, 2, true, 0.0f},
        {"attention_query_blocks_noncausal", 5, 2, 1, 70, 75, 1, false, 0.0f},
    };
    for (const AttnCase & ac : attns) {
        c.push_back({ac.name, [ac](Dual & D) {
                         const LeafOpts o{.lo = -1.5, .hi = 1.5};
                         const V q = D.f32("q", {ac.D, ac.H, ac.T, ac.B}, o);
                         const V k = D.f32("k", {ac.D, ac.G, ac.S, ac.B}, o);
                         const V v = D.f32("v", {ac.D, ac.G, ac.S, ac.B}, o);
                         return attention(D, q, k, v, {.scale = ac.scale, .causal = ac.causal});
                     }});
    }
    c.push_back({"attention_permuted_views_gqa", [](Dual & D) {
                     const LeafOpts o{.lo = -1.5, .hi = 1.5};
                     const V q = permute(D, D.f32("q", {6, 4, 4, 2}, o), {0, 2, 1, 3});  // [D, T, H, B] -> [D, H, T, B]
                     const V k = permute(D, D.f32("k", {6, 5, 2, 2}, o), {0, 2, 1, 3});
                     const V v = slice(D, D.f32("v", {6, 3, 5, 2}, o), {0, 1, 0, 0}, {6, 2, 5, 2});
                     return attention(D, q, k, v, {.causal = true});
                 }});
    c.push_back({"attention_composed_gqa_cached", [](Dual & D) {
                     const LeafOpts o{.lo = -1.5, .hi = 1.5};
                     const V q = D.f32("q", {6, 4, 3, 2}, o);
                     const V k = D.f32("k", {6, 2, 5, 2}, o);
                     const V v = D.f32("v", {6, 2, 5, 2}, o);
                     return composed_attention(D, q, k, v);
                 }});
    c.push_back({"causal_mask_T_eq_S", [](Dual & D) { return causal_mask(D, D.f32("s", {6, 6, 2}), 0); }});
    c.push_back({"causal_mask_n_past3_transposed", [](Dual & D) {
                     return causal_mask(D, transpose(D, D.f32("s", {4, 7, 3})), 3);  // [S=7, T=4, 3]
                 }});

    // cross_entropy
    c.push_back({"cross_entropy", [](Dual & D) {
                     return cross_entropy(D, D.f32("logits", {11, 5, 2}, {.lo = -4, .hi = 4}), D.ids("targets", {5, 2}, 11));
                 }});
    c.push_back({"cross_entropy_ignore_index", [](Dual & D) {
                     return cross_entropy(D, D.f32("logits", {11, 5, 2}, {.lo = -4, .hi = 4}),
                                          D.i32("targets", {5, 2}, {3, -1, 10, 0, -1, -1, 7, 2, 2, -1}));
                 }});
    c.push_back({"cross_entropy_custom_ignore_sliced_logits", [](Dual & D) {
                     const V logits = slice(D, D.f32("logits", {14, 4, 2}, {.lo = -4, .hi = 4}), {2, 0, 0, 0}, {11, 4, 2});
                     return cross_entropy(D, logits, D.i32("targets", {4, 2}, {5, 5, 1, 9, 0, 5, 10, 3}), 5);
                 }});
    c.push_back({"cross_entropy_all_ignored", [](Dual & D) {
                     return cross_entropy(D, D.f32("logits", {11, 3}), D.i32("targets", {3}, {-1, -1, -1}));
                 }});

    // concat
    for (int dim = 0; dim < 3; ++dim) {
        c.push_back({"concat_dim" + std::to_string(dim), [dim](Dual & D) {
                         Ne a{5, 4, 3, 2}, b{5, 4, 3, 2};
                         b[static_cast<size_t>(dim)] = 2;
                         const V x = D.f32("a", {a[0], a[1], a[2], a[3]});
                         const V y = D.f32("b", {b[0], b[1], b[2], b[3]});
                         return concat(D, x, y, dim);
                     }});
    }
    c.push_back({"concat_dim3", [](Dual & D) { return concat(D, D.f32("a", {3, 2, 2, 1}), D.f32("b", {3, 2, 2, 3}), 3); }});
    c.push_back({"concat_dim1_views", [](Dual & D) {
                     const V x = transpose(D, D.f32("a", {3, 5}));                       // [5, 3]
                     const V y = slice(D, D.f32("b", {7, 4}), {1, 0, 0, 0}, {5, 4});     // [5, 4]
                     return concat(D, x, y, 1);
                 }});

    c.push_back({"llama_stack_2_layers", [](Dual & D) { return llama_stack(D).logits; }});
    return c;
}

std::vector<OpCase> gradient_cases() {
    std::vector<OpCase> c;
    using toyllm::RopeMode;
    const LeafOpts p{.param = true};
    const LeafOpts p_wide{.param = true, .lo = -1.5, .hi = 1.5};

    c.push_back({"cont_transpose", [=](Dual & D) { return cont(D, transpose(D, D.f32("x", {7, 5}, p))); }});
    c.push_back({"views_reshape_permute_slice", [=](Dual & D) {
                     const V x = reshape(D, D.f32("x", {6, 5, 2}, p), {3, 10, 2});
                     const V y = permute(D, x, {2, 0, 1, 3});                    // [10, 2, 3]
                     return mul(D, slice(D, y, {2, 0, 1, 0}, {7, 2, 2}), D.f32("w", {7, 2, 2}, p));
                 }});
    c.push_back({"get_rows_table_repeated_ids", [=](Dual & D) {
                     return get_rows(D, D.f32("table", {9, 11}, p), D.i32("ids", {5, 2}, {3, 0, 10, 3, 7, 7, 1, 3, 10, 3}));
                 }});
    c.push_back({"matmul_f32_both", [=](Dual & D) { return matmul(D, D.f32("a", {13, 9}, p), D.f32("b", {13, 7}, p)); }});
    // A tied embedding: one table both looked up and multiplied with, so its gradient is
    // a scatter-add plus a matmul gradient, both accumulated in place into its buffer.
    c.push_back({"embedding_tied_to_output", [=](Dual & D) {
                     const V table = D.f32("table", {9, 11}, p);
                     return matmul(D, table, get_rows(D, table, D.i32("ids", {5}, {3, 0, 10, 3, 7})));
                 }});
    c.push_back({"matmul_f32_M1", [=](Dual & D) { return matmul(D, D.f32("a", {13, 9}, p), D.f32("b", {13, 1}, p)); }});
    c.push_back({"matmul_f32_a_transposed", [=](Dual & D) {
                     return matmul(D, transpose(D, D.f32("at", {9, 13}, p)), D.f32("b", {13, 7}, p));
                 }});
    c.push_back({"matmul_f32_batched_broadcast_a_1x2", [=](Dual & D) {
                     return matmul(D, D.f32("a", {11, 6, 1, 2}, p), D.f32("b", {11, 5, 3, 2}, p));
                 }});
    c.push_back({"matmul_f32_batched_broadcast_a_3x1", [=](Dual & D) {
                     return matmul(D, D.f32("a", {11, 6, 3, 1}, p), D.f32("b", {11, 5, 3, 2}, p));
                 }});
    c.push_back({"matmul_f32_batched_groups_a_2x2_b_4x6", [=](Dual & D) {
                     return matmul(D, D.f32("a", {7, 5, 2, 2}, p), D.f32("b", {7, 3, 4, 6}, p));
                 }});
    c.push_back({"matmul_f32_b_strided", [=](Dual & D) {
                     return matmul(D, D.f32("a", {11, 6}, p), transpose(D, D.f32("bt", {4, 11}, p)));
                 }});
    c.push_back({"matmul_q8_0_a_param_b", [=](Dual & D) {
                     return matmul(D, D.weight(DType::Q8_0, "a", {64, 9}), D.f32("b", {64, 5}, p));
                 }});
    for (DType t : {DType::F16, DType::BF16, DType::Q4_0, DType::Q6_K}) {
        const int64_t K = toyllm::dtype_info(t).block_size == 256 ? 256 : 64;
        c.push_back({"matmul_" + type_tag(t) + "_a_param_b", [=](Dual & D) {
                         return matmul(D, D.weight(t, "a", {K, 7}), D.f32("b", {K, 3}, p));
                     }});
    }
    c.push_back({"matmul_q4_K_a_batched_param_b", [=](Dual & D) {
                     return matmul(D, D.weight(DType::Q4_K, "a", {256, 5, 1, 2}), D.f32("b", {256, 3, 2, 2}, {.param = true}));
                 }, kTolF32, 96});
    c.push_back({"add_broadcast_both", [=](Dual & D) { return add(D, D.f32("a", {7, 5, 3}, p), D.f32("b", {7, 1, 3}, p)); }});
    c.push_back({"add_broadcast_tile_dim0", [=](Dual & D) { return add(D, D.f32("a", {6, 4}, p), D.f32("b", {3, 1}, p)); }});
    c.push_back({"mul_broadcast_both", [=](Dual & D) { return mul(D, D.f32("a", {7, 5, 3}, p), D.f32("b", {1, 5, 3}, p)); }});
    c.push_back({"mul_transposed_same", [=](Dual & D) {
                     const V x = D.f32("x", {5, 7}, p);
                     return mul(D, transpose(D, x), transpose(D, x));
                 }});
    c.push_back({"scale", [=](Dual & D) { return scale(D, D.f32("x", {7, 3}, p), -1.3f); }});
    c.push_back({"sum", [=](Dual & D) { return sum(D, D.f32("x", {7, 3, 2}, p)); }});
    c.push_back({"mean_of_view", [=](Dual & D) { return mean(D, transpose(D, D.f32("x", {7, 3}, p))); }});
    c.push_back({"sum_to", [=](Dual & D) { return sum_to(D, D.f32("x", {6, 5, 4}, p), {3, 1, 4}); }});
    c.push_back({"repeat", [=](Dual & D) { return repeat(D, D.f32("x", {3, 1, 2}, p), {6, 5, 4}); }});
    c.push_back({"silu", [=](Dual & D) { return silu(D, D.f32("x", {13, 5}, {.param = true, .lo = -5, .hi = 5})); }});
    c.push_back({"swiglu", [=](Dual & D) {
                     return swiglu(D, D.f32("g", {13, 5}, {.param = true, .lo = -4, .hi = 4}), D.f32("u", {13, 5}, p));
                 }});
    c.push_back({"softmax", [=](Dual & D) { return softmax(D, D.f32("x", {13, 5}, {.param = true, .lo = -3, .hi = 3})); }});
    c.push_back({"softmax_transposed", [=](Dual & D) {
                     return softmax(D, transpose(D, D.f32("x", {5, 13}, {.param = true, .lo = -3, .hi = 3})));
                 }});
    c.push_back({"rms_norm_no_weight", [=](Dual & D) { return rms_norm(D, D.f32("x", {19, 5}, p), nullptr); }});
    c.push_back({"rms_norm_x_and_weight", [=](Dual & D) {
                     const V w = D.f32("w", {19}, {.param = true, .lo = 0.5, .hi = 1.5});
                     return rms_norm(D, D.f32("x", {19, 5, 2}, p), &w);
                 }});
    c.push_back({"rms_norm_weight_of_slice", [=](Dual & D) {
                     const V w = D.f32("w", {9}, {.param = true, .lo = 0.5, .hi = 1.5});
                     return rms_norm(D, slice(D, D.f32("x", {9, 8}, p), {0, 2, 0, 0}, {9, 5}), &w);
                 }});
    c.push_back({"rms_norm_strided_weight", [=](Dual & D) {
                     const V w = transpose(D, slice(D, D.f32("w3", {3, 9}, {.param = true, .lo = 0.5, .hi = 1.5}), {2, 0, 0, 0}, {1, 9}));
                     return rms_norm(D, D.f32("x", {9, 4}, p), &w);
                 }});
    c.push_back({"rope_normal_partial_pos3", [=](Dual & D) {
                     const toyllm::RopeConfig cfg{.mode = RopeMode::NORMAL, .n_rot = 6};
                     return rope(D, D.f32("x", {10, 3, 5, 2}, p), D.i32("pos", {5}, iota_from(3, 5)), cfg);
                 }});
    c.push_back({"rope_neox_freq_factors", [=](Dual & D) {
                     const toyllm::RopeConfig cfg{.mode = RopeMode::NEOX, .n_rot = 8, .freq_scale = 0.5f};
                     const V ff = D.f32("freq_factors", {4}, {.lo = 1.0, .hi = 4.0});
                     return rope(D, D.f32("x", {8, 2, 4}, p), D.i32("pos", {4}, {5, 1, 12, 8}), cfg, &ff);
                 }});
    c.push_back({"rope_normal_permuted_input", [=](Dual & D) {
                     const toyllm::RopeConfig cfg{.mode = RopeMode::NORMAL, .n_rot = 8};
                     const V x = permute(D, D.f32("x", {8, 4, 3}, p), {0, 2, 1, 3});
                     return rope(D, x, D.i32("pos", {4}, iota_from(2, 4)), cfg);
                 }});
    c.push_back({"attention_gqa_cached_qkv", [=](Dual & D) {
                     const V q = D.f32("q", {6, 4, 3, 2}, p_wide);
                     const V k = D.f32("k", {6, 2, 5, 2}, p_wide);
                     const V v = D.f32("v", {6, 2, 5, 2}, p_wide);
                     return attention(D, q, k, v, {.causal = true});
                 }});
    c.push_back({"attention_query_blocks_gqa_cached", [=](Dual & D) {
                     const V q = D.f32("q", {4, 2, 70, 1}, p_wide);  // two blocks of 64 queries
                     const V k = D.f32("k", {4, 1, 75, 1}, p_wide);
                     const V v = D.f32("v", {4, 1, 75, 1}, p_wide);
                     return attention(D, q, k, v, {.causal = true});
                 }});
    c.push_back({"attention_gqa_H4_G1", [=](Dual & D) {
                     const V q = D.f32("q", {5, 4, 4}, p_wide);
                     const V k = D.f32("k", {5, 1, 4}, p_wide);
                     const V v = D.f32("v", {5, 1, 4}, p_wide);
                     return attention(D, q, k, v, {.scale = 0.6f, .causal = true});
                 }});
    c.push_back({"attention_noncausal", [=](Dual & D) {
                     const V q = D.f32("q", {6, 2, 3, 2}, p_wide);
                     const V k = D.f32("k", {6, 2, 5, 2}, p_wide);
                     const V v = D.f32("v", {6, 2, 5, 2}, p_wide);
                     return attention(D, q, k, v, {.causal = false});
                 }});
    c.push_back({"attention_permuted_views", [=](Dual & D) {
                     const V q = permute(D, D.f32("q", {6, 3, 4}, p_wide), {0, 2, 1, 3});
                     const V k = permute(D, D.f32("k", {6, 5, 2}, p_wide), {0, 2, 1, 3});
                     const V v = permute(D, D.f32("v", {6, 5, 2}, p_wide), {0, 2, 1, 3});
                     return attention(D, q, k, v, {.causal = true});
                 }});
    c.push_back({"attention_composed_causal_mask", [=](Dual & D) {
                     const V q = D.f32("q", {6, 4, 3, 2}, p_wide);
                     const V k = D.f32("k", {6, 2, 5, 2}, p_wide);
                     const V v = D.f32("v", {6, 2, 5, 2}, p_wide);
                     return composed_attention(D, q, k, v);
                 }});
    c.push_back({"cross_entropy_ignore_index", [=](Dual & D) {
                     return cross_entropy(D, D.f32("logits", {11, 5, 2}, {.param = true, .lo = -3, .hi = 3}),
                                          D.i32("targets", {5, 2}, {3, -1, 10, 0, -1, -1, 7, 2, 2, -1}));
                 }});
    c.push_back({"cross_entropy_sliced_logits", [=](Dual & D) {
                     const V logits = slice(D, D.f32("logits", {14, 4}, {.param = true, .lo = -3, .hi = 3}), {2, 0, 0, 0}, {11, 4});
                     return cross_entropy(D, logits, D.i32("targets", {4}, {0, 10, 4, 4}));
                 }});
    c.push_back({"cross_entropy_all_ignored", [=](Dual & D) {
                     return cross_entropy(D, D.f32("logits", {11, 3}, p), D.i32("targets", {3}, {-1, -1, -1}));
                 }});
    for (int dim = 0; dim < 3; ++dim) {
        c.push_back({"concat_dim" + std::to_string(dim), [=](Dual & D) {
                         Ne b{4, 3, 2, 1};
                         b[static_cast<size_t>(dim)] = 3;
                         const V x = D.f32("a", {4, 3, 2}, p);
                         const V y = D.f32("b", {b[0], b[1], b[2]}, p);
                         return concat(D, x, y, dim);
                     }});
    }
    c.push_back({"concat_of_views", [=](Dual & D) {
                     const V x = transpose(D, D.f32("a", {3, 5}, p));
                     const V y = slice(D, D.f32("b", {7, 4}, p), {1, 0, 0, 0}, {5, 4});
                     return concat(D, x, y, 1);
                 }});
    c.push_back({"llama_stack_2_layers", [](Dual & D) { return llama_stack(D).loss; }, kTolF32, 12});
    return c;
}

uint32_t seed_of(const std::string & name) { return static_cast<uint32_t>(std::hash<std::string>{}(name)); }

// ---- forward mode -------------------------------------------------------------------

class OpForward : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpForward, MatchesDoubleReference) {
    const OpCase & tc = GetParam();
    for (int n_threads : kThreadCounts) {
        SCOPED_TRACE("n_threads " + std::to_string(n_threads));
        Context ctx;
        Dual D(&ctx, seed_of(tc.name));
        const V out = tc.body(D);
        ASSERT_NE(out.t, nullptr);
        ASSERT_EQ(out.t->ne, out.r.ne) << "shape " << toyllm::shape_str(*out.t);
        out.t->flags |= toyllm::TENSOR_OUTPUT;
        Graph g;
        g.build_forward(out.t);
        toyllm::make_backend("cpu", {.n_threads = n_threads})->compute(g);
        const double err = normalized_error(read_values(out.t), out.r);
        EXPECT_LE(err, tc.tol) << tc.name;
    }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpForward, ::testing::ValuesIn(forward_cases()), case_name);

// ---- gradient mode ------------------------------------------------------------------

// Builds the case with loss = sum(out * R) for a fixed random R, computes its backward
// once and compares every param's gradient with central differences of the double
// reference of the same loss.
class OpGradient : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpGradient, MatchesFiniteDifferences) {
    const OpCase & tc = GetParam();
    for (int n_threads : kThreadCounts) {
        SCOPED_TRACE("n_threads " + std::to_string(n_threads));
        Context ctx;
        Dual D(&ctx, seed_of(tc.name));
        const V out = tc.body(D);
        ASSERT_NE(out.t, nullptr);
        ASSERT_EQ(out.t->ne, out.r.ne);

        Tensor * r = ctx.new_tensor(DType::F32, out.t->ne, "R");
        ctx.alloc(r);
        std::mt19937 rng(1234);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (int64_t i = 0; i < r->n_elements(); ++i) r->data_as<float>()[i] = u(rng);
        const DT R = read_values(r);
        Tensor * loss = toyllm::sum(ctx, toyllm::mul(ctx, out.t, r));
        Graph g;
        g.build_backward(ctx, loss);
        toyllm::make_backend("cpu", {.n_threads = n_threads})->compute(g);

        auto reference_loss = [&] {
            D.replay();
            const V o = tc.body(D);
            double l = 0.0;
            for (size_t i = 0; i < o.r.v.size(); ++i) l += R.v[i] * o.r.v[i];
            return l;
        };
        int n_params = 0;
        for (Dual::Leaf & leaf : D.leaves()) {
            if (!leaf.param) continue;
            ++n_params;
            SCOPED_TRACE("param " + leaf.name);
            ASSERT_NE(leaf.t->grad, nullptr);
            const DT got = read_values(leaf.t->grad);
            const auto n = static_cast<int64_t>(leaf.value.v.size());
            // Every element up to max_fd_samples, else an even spread plus the largest gradient.
            std::vector<int64_t> idx;
            if (n <= tc.max_fd_samples) {
                for (int64_t i = 0; i < n; ++i) idx.push_back(i);
            } else {
                for (int64_t j = 0; j < tc.max_fd_samples - 1; ++j) idx.push_back(std::min(n - 1, j * n / (tc.max_fd_samples - 1) + j % 3));
                const auto big = std::max_element(got.v.begin(), got.v.end(), [](double a, double b) { return std::abs(a) < std::abs(b); });
                idx.push_back(big - got.v.begin());
            }
            double max_err = 0.0, max_fd = 0.0;
            for (int64_t i : idx) {
                double & x = leaf.value.v[static_cast<size_t>(i)];
                const double x0 = x;
                const double h = kFdStep * std::max(1.0, std::abs(x0));
                x = x0 + h;
                const double lp = reference_loss();
                x = x0 - h;
                const double lm = reference_loss();
                x = x0;
                const double fd = (lp - lm) / (2.0 * h);
                max_err = std::max(max_err, std::abs(got.v[static_cast<size_t>(i)] - fd));
                max_fd = std::max(max_fd, std::abs(fd));
            }
            EXPECT_LE(max_err / std::max(max_fd, 1e-6), kTolGrad) << "max |grad - fd| " << max_err << ", max |fd| " << max_fd;
        }
        EXPECT_GT(n_params, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpGradient, ::testing::ValuesIn(gradient_cases()), case_name);

// Gradients accumulate into p->grad across computes until zero_grads().
TEST(OpGradientAccumulation, SecondComputeDoublesAndZeroGradsClears) {
    Context ctx;
    Dual D(&ctx, 7);
    const V w = D.f32("w", {9}, {.param = true, .lo = 0.5, .hi = 1.5});
    const V a = D.f32("a", {9, 6}, {.param = true});
    const V x = D.f32("x", {9, 4}, {.param = true});
    const V out = matmul(D, a, rms_norm(D, x, &w));
    Tensor * loss = toyllm::sum(ctx, toyllm::mul(ctx, out.t, out.t));
    Graph g;
    g.build_backward(ctx, loss);
    auto be = toyllm::make_backend("cpu", {.n_threads = 2});
    be->compute(g);
    std::vector<DT> first;
    for (const Dual::Leaf & l : D.leaves()) first.push_back(read_values(l.t->grad));
    be->compute(g);
    for (size_t i = 0; i < D.leaves().size(); ++i) {
        const DT second = read_values(D.leaves()[i].t->grad);
        // The weight gradient of `a` accumulates inside its matmul (a chain of fmas that
        // continues from the first result), so doubling holds to float rounding, not bits.
        for (size_t j = 0; j < second.v.size(); ++j) {
            ASSERT_NEAR(second.v[j], 2.0 * first[i].v[j], 1e-6 * std::abs(2.0 * first[i].v[j]) + 1e-12) << D.leaves()[i].name << " [" << j << "]";
        }
    }
    g.zero_grads();
    for (const Dual::Leaf & l : D.leaves()) {
        for (double v : read_values(l.t->grad).v) ASSERT_EQ(v, 0.0) << l.name;
    }
    be->compute(g);
    for (size_t i = 0; i < D.leaves().size(); ++i) {
        EXPECT_EQ(read_values(D.leaves()[i].t->grad).v, first[i].v) << D.leaves()[i].name;
    }
}

// ---- determinism --------------------------------------------------------------------

struct StackRun {
    std::vector<uint8_t> loss, logits;
    std::vector<std::vector<uint8_t>> grads;
};

std::vector<uint8_t> bytes_of(const Tensor * t) {
    EXPECT_TRUE(t->is_contiguous());
    const auto * p = static_cast<const uint8_t *>(t->data);
    return {p, p + t->n_bytes()};
}

StackRun snapshot(const StackOut & out, Dual & D) {
    StackRun r{bytes_of(out.loss.t), bytes_of(out.logits.t), {}};
    for (const Dual::Leaf & l : D.leaves()) {
        if (l.param) r.grads.push_back(bytes_of(l.t->grad));
    }
    return r;
}

void expect_identical(const StackRun & a, const StackRun & b, const std::string & what) {
    EXPECT_EQ(a.loss, b.loss) << what;
    EXPECT_EQ(a.logits, b.logits) << what;
    ASSERT_EQ(a.grads.size(), b.grads.size()) << what;
    for (size_t i = 0; i < a.grads.size(); ++i) EXPECT_EQ(a.grads[i], b.grads[i]) << what << ", gradient " << i;
}

TEST(OpDeterminism, LlamaStackForwardBackwardIsBitIdentical) {
    std::vector<StackRun> runs;
    for (int n_threads : {1, 2, 3}) {
        Context ctx;
        Dual D(&ctx, 99);
        const StackOut out = llama_stack(D);
        out.logits.t->flags |= toyllm::TENSOR_OUTPUT;
        out.loss.t->flags |= toyllm::TENSOR_OUTPUT;
        Graph g;
        g.build_backward(ctx, out.loss.t);
        auto be = toyllm::make_backend("cpu", {.n_threads = n_threads});
        be->compute(g);
        const StackRun first = snapshot(out, D);
        ASSERT_TRUE(std::isfinite(*out.loss.t->data_as<float>()));
        g.zero_grads();
        be->compute(g);
        expect_identical(first, snapshot(out, D), "second run, n_threads " + std::to_string(n_threads));
        // The same graph (planned by this backend) on a pool of another size.
        g.zero_grads();
        toyllm::make_backend("cpu", {.n_threads = n_threads == 1 ? 3 : 1})->compute(g);
        expect_identical(first, snapshot(out, D), "other pool, n_threads " + std::to_string(n_threads));
        runs.push_back(first);
    }
    expect_identical(runs[0], runs[1], "n_threads 1 vs 2");
    expect_identical(runs[0], runs[2], "n_threads 1 vs 3");
}

// A graph planned by a backend with one thread, then run on a pool of three: per-thread
// scratch (attention keeps S scores per thread) must be sized for the pool that runs it.
TEST(OpBackend, GraphPlannedOnSmallerPoolRunsOnLargerPool) {
    Context ctx;
    Dual D(&ctx, 5);
    const V q = D.f32("q", {4, 3, 2});
    const V k = D.f32("k", {4, 3, 97});
    const V v = D.f32("v", {4, 3, 97});
    const V out = attention(D, q, k, v, {.causal = true});
    out.t->flags |= toyllm::TENSOR_OUTPUT;
    Graph g;
    g.build_forward(out.t);
    toyllm::make_backend("cpu", {.n_threads = 1})->compute(g);
    const std::vector<uint8_t> first = bytes_of(out.t);
    toyllm::make_backend("cpu", {.n_threads = 3})->compute(g);
    EXPECT_EQ(bytes_of(out.t), first);
    EXPECT_LE(normalized_error(read_values(out.t), out.r), kTolF32);
}

// Decode (one query per head: its own three-phase path) gives the bits of the same query
// as the last row of a prefill, over key and head-dim chunks and their tails, for 1 and
// 3 threads.
TEST(OpAttention, DecodeGivesTheBitsOfPrefill) {
    for (const auto & [Dh, H, G, S] : {std::array<int64_t, 4>{64, 9, 3, 300}, std::array<int64_t, 4>{40, 4, 2, 65}}) {
        Context ctx;
        std::mt19937 rng(static_cast<uint32_t>(S));
        std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
        const auto leaf = [&](std::initializer_list<int64_t> ne) {
            Tensor * t = ctx.new_tensor(DType::F32, ne);
            ctx.alloc(t);
            for (int64_t i = 0; i < t->n_elements(); ++i) t->data_as<float>()[i] = dist(rng);
            return t;
        };
        Tensor * q = leaf({Dh, H, S}), * k = leaf({Dh, G, S}), * v = leaf({Dh, G, S}), * q1 = leaf({Dh, H, 1});
        std::memcpy(q1->data, q->data_as<float>() + (S - 1) * Dh * H, static_cast<size_t>(Dh * H) * sizeof(float));
        Tensor * all = toyllm::attention(ctx, q, k, v, {.causal = true});
        Tensor * one = toyllm::attention(ctx, q1, k, v, {.causal = true});
        all->flags |= toyllm::TENSOR_OUTPUT;
        one->flags |= toyllm::TENSOR_OUTPUT;
        Graph g;
        g.build_forward(all);
        g.build_forward(one);
        for (int nth : {1, 3}) {
            toyllm::make_backend("cpu", {.n_threads = nth})->compute(g);
            EXPECT_EQ(std::memcmp(one->data, all->data_as<float>() + (S - 1) * Dh * H, static_cast<size_t>(Dh * H) * sizeof(float)), 0)
                << "head dim " << Dh << ", " << S << " keys, " << nth << " threads";
        }
    }
}

// Products of constant weights with one activation are moved together (Graph::
// build_forward): Q, K and V run one after the other, a product of a weight that is not
// constant stays where it was, and the values are those of the graph as written.
TEST(OpGraph, ProductsOfOneActivationFollowEachOther) {
    Context ctx;
    Dual D(&ctx, 9);
    const V x0 = D.f32("x0", {8, 3});
    const V wq = D.f32("wq", {8, 4}), wk = D.f32("wk", {8, 4}), wv = D.f32("wv", {8, 4}), wc = D.f32("wc", {8, 4});
    for (const V & w : {wq, wk, wv}) w.t->flags |= toyllm::TENSOR_CONSTANT;
    const V x = scale(D, x0, 2.0f);
    const V q = matmul(D, wq, x);
    const V k = matmul(D, wk, x);
    const V c = matmul(D, wc, x);
    const V v = matmul(D, wv, x);
    const V out = add(D, add(D, add(D, scale(D, q, 0.5f), scale(D, k, 0.25f)), c), v);
    out.t->flags |= toyllm::TENSOR_OUTPUT;
    Graph g;
    g.build_forward(out.t);
    const auto & nodes = g.nodes();
    const auto pos = [&](const Tensor * t) { return std::find(nodes.begin(), nodes.end(), t) - nodes.begin(); };
    EXPECT_EQ(pos(k.t), pos(q.t) + 1);
    EXPECT_EQ(pos(v.t), pos(q.t) + 2);
    EXPECT_GT(pos(c.t), pos(v.t));  // wc is not constant: not moved
    toyllm::make_backend("cpu", {.n_threads = 2})->compute(g);
    EXPECT_LE(normalized_error(read_values(out.t), out.r), kTolF32);
}

// ---- errors -------------------------------------------------------------------------

Tensor * leaf(Context & ctx, DType t, std::initializer_list<int64_t> ne) {
    Tensor * x = ctx.new_tensor(t, ne);
    ctx.alloc(x);
    return x;
}

template <class F> void expect_shape_error(F f, const std::string & op) {
    try {
        f();
        ADD_FAILURE() << op << ": no ShapeError";
    } catch (const toyllm::ShapeError & e) {
        EXPECT_EQ(std::string(e.what()).rfind(op + ":", 0), 0u) << e.what();
    }
}

TEST(OpErrors, BuildersRejectBadShapes) {
    Context ctx;
    expect_shape_error([&] { toyllm::matmul(ctx, leaf(ctx, DType::F32, {8, 4}), leaf(ctx, DType::F32, {7, 3})); }, "matmul");
    expect_shape_error([&] { toyllm::add(ctx, leaf(ctx, DType::F32, {8, 4}), leaf(ctx, DType::F32, {3, 4})); }, "add");
    expect_shape_error([&] { toyllm::mul(ctx, leaf(ctx, DType::F32, {8, 4}), leaf(ctx, DType::F32, {8, 3})); }, "mul");
    expect_shape_error([&] {
        toyllm::attention(ctx, leaf(ctx, DType::F32, {8, 3, 2}), leaf(ctx, DType::F32, {8, 2, 2}), leaf(ctx, DType::F32, {8, 2, 2}), {});
    }, "attention");
    expect_shape_error([&] { toyllm::get_rows(ctx, leaf(ctx, DType::F32, {8, 4}), leaf(ctx, DType::F32, {3})); }, "get_rows");
    expect_shape_error([&] {
        toyllm::rope(ctx, leaf(ctx, DType::F32, {8, 2, 3}), leaf(ctx, DType::I32, {3}), {.mode = toyllm::RopeMode::NORMAL, .n_rot = 5});
    }, "rope");
    expect_shape_error([&] { toyllm::reshape(ctx, toyllm::transpose(ctx, leaf(ctx, DType::F32, {8, 4})), {32}); }, "reshape");
    expect_shape_error([&] { toyllm::concat(ctx, leaf(ctx, DType::F32, {8, 4}), leaf(ctx, DType::F32, {7, 3}), 0); }, "concat");
}

// Attention over an f16 KV cache: write_window rounds f32 keys and values into f16
// tensors (to nearest even, checked bit for bit), and attention over them equals double
// attention on the half-rounded q, k and v within the f16 accumulator's rounding (at most
// one half ulp, 2^-11 relative, per key: n_keys 2^-11 max|v|). Same bits for 1 and 2 threads.
TEST(OpF16Cache, AttentionOverHalfKeysAndValues) {
    struct Shape { int64_t D, H, G, T, S, B; };
    for (const Shape sh : {Shape{8, 4, 2, 5, 70, 2}, Shape{64, 3, 1, 1, 130, 1}, Shape{6, 2, 2, 4, 4, 1}}) {
        SCOPED_TRACE("D " + std::to_string(sh.D) + " S " + std::to_string(sh.S));
        std::vector<std::vector<uint8_t>> outs;
        for (int n_threads : kThreadCounts) {
            Context ctx;
            std::mt19937 rng(5);
            std::uniform_real_distribution<float> u(-1.5f, 1.5f);
            auto random_f32 = [&](std::initializer_list<int64_t> ne) {
                Tensor * t = leaf(ctx, DType::F32, ne);
                for (int64_t i = 0; i < t->n_elements(); ++i) t->data_as<float>()[i] = u(rng);
                return t;
            };
            Tensor * q = random_f32({sh.D, sh.H, sh.T, sh.B});
            Tensor * k32 = random_f32({sh.D, sh.G, sh.S, sh.B});
            Tensor * v32 = random_f32({sh.D, sh.G, sh.S, sh.B});
            Tensor * kc = leaf(ctx, DType::F16, {sh.D, sh.G, sh.S, sh.B});
            Tensor * vc = leaf(ctx, DType::F16, {sh.D, sh.G, sh.S, sh.B});
            Tensor * out = toyllm::attention(ctx, q, toyllm::write_window(ctx, kc, k32, {0, 0, 0, 0}),
                                             toyllm::write_window(ctx, vc, v32, {0, 0, 0, 0}), {.causal = true});
            Graph g;
            g.build_forward(out);
            toyllm::make_backend("cpu", {.n_threads = n_threads})->compute(g);
            for (int64_t i = 0; i < k32->n_elements(); ++i) {
                ASSERT_EQ(kc->data_as<uint16_t>()[i], toyllm::fp32_to_fp16(k32->data_as<float>()[i])) << i;
                ASSERT_EQ(vc->data_as<uint16_t>()[i], toyllm::fp32_to_fp16(v32->data_as<float>()[i])) << i;
            }
            DT qh = read_values(q);
            for (double & x : qh.v) x = toyllm::fp16_to_fp32(toyllm::fp32_to_fp16(static_cast<float>(x)));
            const DT want = ref::attention(qh, read_values(kc), read_values(vc), 1.0 / std::sqrt(static_cast<double>(sh.D)), true);
            const DT got = read_values(out);
            double max_err = 0;
            for (size_t i = 0; i < want.v.size(); ++i) max_err = std::max(max_err, std::abs(got.v[i] - want.v[i]));
            EXPECT_LT(max_err, static_cast<double>(sh.S) * std::ldexp(1.0, -11) * 1.5) << "max error " << max_err;
            std::printf("f16 attention D %lld S %lld: max |error| %.3g\n", static_cast<long long>(sh.D), static_cast<long long>(sh.S), max_err);
            outs.push_back(bytes_of(out));
        }
        EXPECT_EQ(outs[0], outs[1]);
    }
}

TEST(OpF16Cache, AttentionRejectsMixedTypesAndGradients) {
    Context ctx;
    expect_shape_error([&] {
        toyllm::attention(ctx, leaf(ctx, DType::F32, {8, 2, 2}), leaf(ctx, DType::F16, {8, 2, 2}), leaf(ctx, DType::F32, {8, 2, 2}), {});
    }, "attention");
    expect_shape_error([&] {
        toyllm::attention(ctx, leaf(ctx, DType::F16, {8, 2, 2}), leaf(ctx, DType::F16, {8, 2, 2}), leaf(ctx, DType::F16, {8, 2, 2}), {});
    }, "attention");
    expect_shape_error([&] { toyllm::write_window(ctx, leaf(ctx, DType::Q8_0, {32, 2}), leaf(ctx, DType::F32, {32, 1}), {0, 0, 0, 0}); }, "write_window");
    Tensor * q = leaf(ctx, DType::F32, {8, 2, 2});
    ctx.set_param(q);
    Tensor * loss = toyllm::sum(ctx, toyllm::attention(ctx, q, leaf(ctx, DType::F16, {8, 2, 2}), leaf(ctx, DType::F16, {8, 2, 2}), {}));
    Graph g;
    expect_shape_error([&] { g.build_backward(ctx, loss); }, "attention");
}

TEST(OpErrors, GetRowsOutOfRangeIdThrowsAtCompute) {
    for (int n_threads : kThreadCounts) {
        Context ctx;
        Tensor * table = leaf(ctx, DType::F32, {4, 5});
        Tensor * ids = leaf(ctx, DType::I32, {3});
        ids->data_as<int32_t>()[1] = 99;
        Graph g;
        g.build_forward(toyllm::get_rows(ctx, table, ids));
        auto be = toyllm::make_backend("cpu", {.n_threads = n_threads});
        try {
            be->compute(g);
            ADD_FAILURE() << "no error for id 99";
        } catch (const toyllm::Error & e) {
            EXPECT_NE(std::string(e.what()).find("99"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("get_rows"), std::string::npos) << e.what();
        }
    }
}

TEST(OpErrors, CudaBackendIsNotBuilt) {
    try {
        toyllm::make_backend("cuda", {.n_threads = 1});
        ADD_FAILURE() << "make_backend(\"cuda\") succeeded";
    } catch (const toyllm::Error & e) {
        EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
    }
}

}  // namespace
