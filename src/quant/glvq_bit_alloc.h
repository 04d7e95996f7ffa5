#pragma once
/// Salience-driven bit allocation (GLVQ after Slim-LLM): every group of a layer
/// gets N-1, N or N+1 bits with as many N+1 as N-1 groups, so the layer's
/// average is exactly N. Plain CPU code on per-group numbers.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace glvq {

enum class GlvqAllocSearch {
  salience,  ///< the paper's: the k most salient groups get N+1, the k least N-1; best k by loss
  exact,     ///< the assignment with equal N+1 / N-1 counts that minimises the summed loss (DP)
};

/// Widths of B groups for a target average N (1 <= N <= 8).
///  - integer N, BIT_ALLOC on, 2 <= N <= 7, B >= 2: N-1 / N / N+1 chosen by SEARCH
///    from LOSS_AT(b) (per-group losses, size B, of quantizing every group at b
///    bits: called for b = N-1, N, N+1);
///  - integer N otherwise: all N (no N-1 below 1 bit or N+1 above 8 exists);
///  - fractional N: floor(N) and ceil(N), round((N - floor N) B) groups at ceil;
///    they are the groups that gain most by the extra bit (BIT_ALLOC on, from
///    LOSS_AT) or the most salient (off). The average is N within 1/(2B).
/// SALIENCE: size B, e.g. sum over the group of w^2 diag(H).
std::vector<int> glvq_allocate_bits(double N, const std::vector<double>& salience, bool bit_alloc,
                                    const std::function<std::vector<double>(int)>& loss_at,
                                    GlvqAllocSearch search = GlvqAllocSearch::exact);

/// The same for a layer of IN columns in B = ceil(IN / GS) groups whose last one
/// may be narrower (IN not a multiple of GS). Groups of unequal size: the full
/// ones share the allocation above (equal sizes keep its average exact); the
/// narrower one takes N, or floor(N) for a fractional N, its share of the extra
/// bits spread over the full groups. LOSS_AT and SALIENCE cover all B groups.
std::vector<int> glvq_allocate_layer_bits(double N, int64_t in, int64_t gs, const std::vector<double>& salience,
                                          bool bit_alloc, const std::function<std::vector<double>(int)>& loss_at,
                                          GlvqAllocSearch search);

}  // namespace glvq
