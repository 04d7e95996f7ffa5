#pragma once
/// The tensor-core ("mma") layout of GLVQ codes, used by the fused GEMV fast path
/// (kernels/glvq_gemv.cu) for layers without companding (every mu_g = 0) and with
/// group_size % 16 == 0. Host-includable; the index helpers are also device code.
///
/// Why it works: with mu = 0, W_hat[r, c] = s_g * sum_k G_g[i][k] t[r, g, v, k] for
/// column c = g*gs + v*d + i, so y_r = sum_c t[r, c] * xt[c] with the transformed
/// activation xt[g*gs + v*d + k] = s_g * sum_i G_g[i][k] x[g*gs + v*d + i]: one
/// small transform of x per call, then a GEMV whose weights are the integer codes,
/// run on tensor cores (mma.m16n8k16, fp16 x fp16 -> fp32) with t = z + 1/2 split
/// into z (exact in fp16) and 1/2 * sum_c xt[c], a per-batch-column constant.
///
/// Byte order. Rows are cut into row tiles of 16 (padded with z = 0), columns into
/// chunks of 16*kt columns (kt in {1,2,4,8}, 16*kt divides group_size, so a chunk has
/// one bit width b). For row tile mt and chunk c the 32 lanes of a warp hold the
/// chunk's A fragments: lane l, register r = 4*j + i (j = 16-column tile of the chunk,
/// i = 0..3) holds the two codes of rows/columns frag_row(l, i), frag_col(l, i) + {0, 1}
/// of tile j; register r lives in lane word reg_word(b, r), at bits b*reg_slot(b, r)
/// (first column) and 16 + b*reg_slot(b, r) (second column), as unsigned z + 2^(b-1).
///
/// Why the slots are placed so (layout 2): an fp16 whose bits are just a field inside
/// the mantissa (bits 0..9) is the subnormal field * 2^-24, so a register is made by one
/// AND when its field already sits there. With slots(b) even ("paired" widths 1, 2, 4,
/// 6, 7, 8) a tile's four registers are placed at one field position b*cls in the low
/// bits of a word or of that word shifted right by b*classes(b)*v: one shift per word
/// and variant, then one AND per register, and the tile's HMMA result is 2^(b*cls) too
/// large, which the kernel divides out per class. Word 2q + (i >> 1) of a pair holds
/// the column halves; the two row halves (i & 1) take two variants of the same class.
/// Odd slots(b) (3 and 5 bits) keep the sequential order (word r / S, slot r % S), one
/// shift and one AND per register.
/// A lane has words(b, kt) words; word j of lane l sits at byte word_offset(j, W, l) of
/// the chunk's block (W * 128 bytes, so a warp reads 512-, 256- or 128-byte runs).
/// Blocks are ordered [row tile][chunk]: block (mt, c) starts at
/// mt * row_tile_bytes + chunk_offsets[c].
#include <cstdint>
#include <string>
#include <vector>

#include "glvq_math.h"

namespace glvq {
namespace mma {

/// Codes per 16-bit half of a word.
GLVQ_HD constexpr int slots(int b) { return 16 / b; }
/// Whether width b uses the paired placement (even slots).
GLVQ_HD constexpr bool paired(int b) { return slots(b) % 2 == 0; }
/// Field positions (b*cls, cls < classes) that a paired width's registers are brought to;
/// b * classes(b) <= 8 keeps every field inside the fp16 mantissa.
GLVQ_HD constexpr int classes(int b) { return !paired(b) ? 1 : b <= 2 ? 4 : b <= 4 ? 2 : 1; }
/// Tiles per word pair of a paired width.
GLVQ_HD constexpr int pair_tiles(int b) { return slots(b) / 2; }
/// 32-bit words per lane for one chunk of kt 16-column tiles.
GLVQ_HD constexpr int words(int b, int kt) {
  return paired(b) ? 2 * ((kt + pair_tiles(b) - 1) / pair_tiles(b)) : (4 * kt + slots(b) - 1) / slots(b);
}
/// Word (of the lane's words) holding register r = 4*j + i.
GLVQ_HD constexpr int reg_word(int b, int r) {
  return paired(b) ? 2 * ((r / 4) / pair_tiles(b)) + ((r % 4) >> 1) : r / slots(b);
}
/// Class of tile j of a chunk: its registers' fields sit at bit b*tile_class(b, j) after
/// the shift, so its HMMA result carries the factor 2^(b*tile_class).
GLVQ_HD constexpr int tile_class(int b, int j) { return paired(b) ? (j % pair_tiles(b)) % classes(b) : 0; }
/// Slot (field at bits b*slot and 16 + b*slot) of register r = 4*j + i.
GLVQ_HD constexpr int reg_slot(int b, int r) {
  return paired(b) ? classes(b) * (2 * (((r / 4) % pair_tiles(b)) / classes(b)) + (r % 4 & 1)) + tile_class(b, r / 4)
                   : r % slots(b);
}
/// Right shift that brings the field of `slot` to bit b*class (paired) or to bit 0 (odd).
GLVQ_HD constexpr int slot_shift(int b, int slot) {
  return paired(b) ? b * classes(b) * (slot / classes(b)) : b * slot;
}
/// Byte offset of word j of lane `lane` inside a chunk block of W words per lane.
GLVQ_HD int word_offset(int j, int W, int lane) {
  const int W4 = W & ~3;
  if (j < W4) return (j >> 2) * 512 + lane * 16 + (j & 3) * 4;
  const int rem = W - W4;
  if (rem >= 2 && j < W4 + 2) return W4 * 128 + lane * 8 + (j - W4) * 4;
  return W4 * 128 + (rem >= 2 ? 256 : 0) + lane * 4;
}
/// Row (0..15) of register i (0..3) of a lane in the m16n8k16 A fragment.
GLVQ_HD int frag_row(int lane, int i) { return (lane >> 2) + ((i & 1) ? 8 : 0); }
/// First of the two columns (0..15) of register i of a lane in the A fragment.
GLVQ_HD int frag_col(int lane, int i) { return 2 * (lane & 3) + ((i & 2) ? 8 : 0); }
/// Position of column c in the fragment-ordered activation: inside each 16-column
/// tile, lane t4 finds its B fragment (columns 2t4, 2t4+1, 2t4+8, 2t4+9) at 4t4..4t4+3.
GLVQ_HD int64_t xt_pos(int64_t c) {
  const int w = int(c & 15);
  return (c & ~int64_t(15)) + 4 * ((w & 7) >> 1) + ((w & 1) | ((w >> 3) << 1));
}

}  // namespace mma

/// Host description of a layer in the mma layout.
struct GlvqMmaPlan {
  int64_t out = 0, in = 0;
  int dim = 0, group_size = 0;
  int kt = 0;                          ///< 16-column tiles per chunk
  int64_t chunks = 0;                  ///< in / (16 * kt)
  int64_t row_tiles = 0;               ///< ceil(out / 16)
  int64_t row_tile_bytes = 0;          ///< bytes of one row tile (all chunks)
  std::vector<int64_t> chunk_offsets;  ///< chunks + 1, bytes inside a row tile
  std::vector<uint8_t> chunk_bits;     ///< chunks
  int64_t bytes() const { return row_tiles * row_tile_bytes; }
};

/// Why the mma layout cannot hold this layer ("" when it can): needs group_size % 16 == 0,
/// bits 1..8 and, for the GEMV to be exact, mu_g == 0 for every group (mu may be null to skip).
std::string glvq_mma_unsupported(int64_t out, int64_t in, int dim, int group_size, const uint8_t* bits,
                                 const float* mu);

/// Plans the layout; throws std::invalid_argument when glvq_mma_unsupported() is not empty.
GlvqMmaPlan glvq_mma_plan(int64_t out, int64_t in, int dim, int group_size, const uint8_t* bits);

/// Repacks checkpoint codes (quant/glvq_codec.h layout, group offsets from bits) into
/// `packed` (plan.bytes() bytes) on the host.
void glvq_mma_repack(const GlvqMmaPlan& plan, const uint8_t* bits, const uint8_t* codes, uint8_t* packed);

}  // namespace glvq
