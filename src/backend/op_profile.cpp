#include "backend/op_profile.h"

#include "ops/op_table.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace toyllm {

bool OpProfile::requested() {
    const char * env = std::getenv("TOYLLM_PROFILE");
    return env != nullptr && env[0] != '\0' && env[0] != '0';
}

void OpProfile::record(const Tensor * node, double seconds) {
    std::string key = ops::op_info(node->op).name;
    double weight = 0.0;
    if (node->op == Op::MATMUL) {
        // The weight-gradient form multiplies two transposed views (x^T, grad^T).
        const bool b_transposed = node->src[1]->nb[0] != static_cast<int64_t>(sizeof(float));
        const Tensor * a = node->src[0];
        if (node->params.i[0] != 0) {
            key += " (transposed a)";
        } else if (b_transposed) {
            key += " (transposed b)";
        } else {
            key += " (a " + std::string(dtype_name(a->type)) + " " + std::to_string(a->ne[1]) + " x " + std::to_string(a->ne[0]) + ")";
            weight = static_cast<double>(a->n_bytes());
        }
    }
    if (node->view_src != nullptr) key += " (in place)";
    Row & r = rows_[key];
    r.seconds += seconds;
    r.elements += node->n_elements();
    r.weight_bytes += weight;
    ++r.calls;
}

void OpProfile::record_phase(const std::string & phase, double seconds) {
    auto it = std::find_if(phases_.begin(), phases_.end(), [&](const auto & p) { return p.first == phase; });
    if (it == phases_.end()) it = phases_.insert(phases_.end(), {phase, Row{}});
    it->second.seconds += seconds;
    ++it->second.calls;
}

OpProfile::~OpProfile() {
    if (!phases_.empty()) {
        std::fprintf(stderr, "%s, host wall clock per compute:", title_.c_str());
        for (const auto & [k, v] : phases_) std::fprintf(stderr, " %s %.1f us;", k.c_str(), 1e6 * v.seconds / static_cast<double>(std::max<long>(v.calls, 1)));
        std::fprintf(stderr, " %ld computes\n", phases_.front().second.calls);
    }
    if (rows_.empty()) return;
    double total = 0.0;
    for (const auto & [k, v] : rows_) total += v.seconds;
    std::vector<std::pair<std::string, Row>> rows(rows_.begin(), rows_.end());
    std::sort(rows.begin(), rows.end(), [](const auto & a, const auto & b) { return a.second.seconds > b.second.seconds; });
    std::fprintf(stderr, "%s: %.3f s in kernels\n", title_.c_str(), total);
    for (const auto & [k, v] : rows) {
        std::fprintf(stderr, "  %-36s %9.3f s %5.1f%% %8ld calls %9.2f us per call %8.2f ns per output element", k.c_str(), v.seconds,
                     100.0 * v.seconds / total, v.calls, 1e6 * v.seconds / static_cast<double>(std::max<long>(v.calls, 1)),
                     1e9 * v.seconds / static_cast<double>(std::max<int64_t>(v.elements, 1)));
        if (v.weight_bytes > 0.0 && v.seconds > 0.0) std::fprintf(stderr, " %7.1f GB/s of weights", v.weight_bytes / v.seconds / 1e9);
        std::fprintf(stderr, "\n");
    }
}

}  // namespace toyllm
