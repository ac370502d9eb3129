// This machine's memory bandwidth, as the benchmarks' bounds use it.
#pragma once

#include <cstdint>
#include <span>

namespace toyllm {

// A STREAM triad a[i] = b[i] + s * c[i] over three float arrays of 128 MiB, split over
// n_threads threads (each first touches its own part), in the widest stores the CPU has:
// the best of three timed passes after an untimed one, in GB/s counted as STREAM does
// (12 bytes per element). About a second of work.
double triad_gbps(int n_threads);

// A read-only stream over `regions`, one after another, each split over n_threads threads
// as split_rows splits a matrix's rows, summed in the widest loads the CPU has: the best
// of three passes after an untimed one, in GB/s of bytes read. Over a model's weights it
// is the rate a decode step, which reads each matrix once, can hope for on this memory
// (its pages included: mapped or loaded, huge or not).
double read_gbps(std::span<const std::span<const uint8_t>> regions, int n_threads);

}  // namespace toyllm
