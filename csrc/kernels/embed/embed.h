// embed: embedding lookup straight from packed weight blobs: out[i][:] = dequantized row ids[i] of W.
//
// The table is a q8 or q4 blob (formats/q8.h, formats/q4.h) whose N rows are the vocabulary and whose K is
// the embedding width, i.e. exactly the blob an Int8Linear / Int4Linear lm_head multiplies with. A tied
// embedding and lm_head therefore share one compressed copy: the GEMV streams the panels, the lookup reads
// one row out of them (4-byte pieces 64 bytes apart for q8, 4-byte pieces 64 bytes apart holding 8 codes
// for q4). Dequantization, row by row:
//   q8: out[k] = w[n][k] * scales[g][n]                      g = k / group_size (one group per channel)
//   q4: out[k] = scales[g][n] * (codes[n][k] - zeros[g][n])   (zeros 8 when symmetric; float zeros as stored)
// the product rounded once to fp32 (both formats): what the reference computes.
// Portable C++ only: a lookup moves D floats per id and is bound by the stores, not by arithmetic.
#pragma once
#include <cstdint>

#include "formats/q4.h"
#include "formats/q8.h"

namespace slimnn {

// Returns -1 after writing n_ids rows of v.k floats (row stride ldo), or the position of the first id
// outside [0, v.n) (nothing is written then). Threaded over ids.
int64_t embed_gather_q8(const Q8View& v, const int64_t* ids, int64_t n_ids, float* out, int64_t ldo, int nthreads);
int64_t embed_gather_q4(const Q4View& v, const int64_t* ids, int64_t n_ids, float* out, int64_t ldo, int nthreads);

}  // namespace slimnn
