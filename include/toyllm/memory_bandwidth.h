// This machine's memory bandwidth, as the benchmarks' bounds use it.
#pragma once

namespace toyllm {

// A STREAM triad a[i] = b[i] + s * c[i] over three float arrays of 128 MiB, split over
// n_threads threads (each first touches its own part), in the widest stores the CPU has:
// the best of three timed passes after an untimed one, in GB/s counted as STREAM does
// (12 bytes per element). About a second of work.
double triad_gbps(int n_threads);

}  // namespace toyllm
