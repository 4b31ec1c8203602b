// The CPU N:M mask over a range of rows, for kernels that compute a mask
// where they have just written the weight (the fused SR-STE SGD step).
#pragma once

#include <cstdint>

namespace mmnm {

// Mask (and masked weight, unless masked is null) of rows [begin, end) of a
// contiguous (A, G, M, B) grouped view w: a row holds the m * inner values
// of one [a, g] pair, its groups run along M. Keeps the n largest
// magnitudes of each group, ties to the lower index, exactly as
// nm_mask_forward does. Returns false if a value is NaN or Inf.
// Instantiated for float, double, at::Half and at::BFloat16.
template <typename scalar_t>
bool nm_mask_rows_cpu(const scalar_t* w, bool* keep, scalar_t* masked,
                      int64_t m, int64_t n, int64_t inner, int64_t begin,
                      int64_t end);

}  // namespace mmnm
