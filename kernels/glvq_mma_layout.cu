// Host side of the mma layout (kernels/glvq_mma_layout.h): planning and repacking.
// Plain host code; it lives here so that the layout's writer sits next to its reader.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "glvq_mma_layout.h"

namespace glvq {

std::string glvq_mma_unsupported(int64_t out, int64_t in, int dim, int group_size, const uint8_t* bits,
                                 const float* mu) {
  if (out <= 0 || in <= 0 || dim <= 0 || group_size <= 0 || group_size % dim || in % group_size)
    return "bad layout (need dim | group_size | in)";
  if (group_size % 16) return "group_size " + std::to_string(group_size) + " is not a multiple of 16";
  for (int64_t g = 0; g < in / group_size; ++g) {
    if (bits[g] < 1 || bits[g] > 8) return "group " + std::to_string(g) + " has bit width outside 1..8";
    if (mu && mu[g] != 0.0f) return "group " + std::to_string(g) + " uses companding (mu > 0)";
  }
  return "";
}

GlvqMmaPlan glvq_mma_plan(int64_t out, int64_t in, int dim, int group_size, const uint8_t* bits) {
  const std::string why = glvq_mma_unsupported(out, in, dim, group_size, bits, nullptr);
  if (!why.empty()) throw std::invalid_argument("GLVQ mma layout: " + why);
  GlvqMmaPlan P;
  P.out = out;
  P.in = in;
  P.dim = dim;
  P.group_size = group_size;
  const int tiles_per_group = group_size / 16;
  P.kt = 1;
  for (int kt : {8, 4, 2}) {
    if (tiles_per_group % kt == 0) {
      P.kt = kt;
      break;
    }
  }
  P.chunks = in / (16 * P.kt);
  P.row_tiles = (out + 15) / 16;
  P.chunk_offsets.assign(P.chunks + 1, 0);
  P.chunk_bits.assign(P.chunks, 0);
  for (int64_t c = 0; c < P.chunks; ++c) {
    const int b = bits[c * 16 * P.kt / group_size];
    P.chunk_bits[c] = uint8_t(b);
    P.chunk_offsets[c + 1] = P.chunk_offsets[c] + int64_t(mma::words(b, P.kt)) * 128;
  }
  P.row_tile_bytes = P.chunk_offsets[P.chunks];
  return P;
}

void glvq_mma_repack(const GlvqMmaPlan& P, const uint8_t* bits, const uint8_t* codes, uint8_t* packed) {
  const int d = P.dim, gs = P.group_size;
  const int64_t groups = P.in / gs, V = gs / d;
  // Group offsets of the checkpoint layout (quant/glvq_codec.h), recomputed here so
  // that kernels/ does not depend on src/quant.
  std::vector<int64_t> goff(groups + 1, 0);
  for (int64_t g = 0; g < groups; ++g) goff[g + 1] = goff[g] + P.out * V * ((int64_t(d) * bits[g] + 7) / 8);
  // Row tiles are independent; a 70B-shaped model has 69 G codes, which one thread
  // repacks in about ten minutes, so the tiles are spread over the host's threads.
  const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int64_t nthreads = std::max<int64_t>(1, std::min<int64_t>(hw, P.row_tiles / 4));
  auto pack_tiles = [&](int64_t mt0, int64_t mt1) {
    // Unsigned codes of one row tile, [16][in], rows past `out` hold z = 0.
    std::vector<uint8_t> uz(size_t(16) * P.in);
    std::vector<uint32_t> lane_words;
    for (int64_t mt = mt0; mt < mt1; ++mt) {
      for (int rr = 0; rr < 16; ++rr) {
        const int64_t r = mt * 16 + rr;
        uint8_t* dst = uz.data() + size_t(rr) * P.in;
        for (int64_t g = 0; g < groups; ++g) {
          const int b = bits[g];
          if (r >= P.out) {
            for (int c = 0; c < gs; ++c) dst[g * gs + c] = uint8_t(1u << (b - 1));
            continue;
          }
          const int64_t vb = (int64_t(d) * b + 7) / 8;
          const uint8_t* src = codes + goff[g] + r * V * vb;
          const uint32_t mask = (1u << b) - 1u;
          for (int64_t v = 0; v < V; ++v, src += vb) {
            for (int j = 0; j < d; ++j) {
              const int pos = j * b;
              uint32_t x = src[pos >> 3];
              if ((pos & 7) + b > 8) x |= uint32_t(src[(pos >> 3) + 1]) << 8;
              dst[g * gs + v * d + j] = uint8_t((x >> (pos & 7)) & mask);
            }
          }
        }
      }
      uint8_t* tile = packed + mt * P.row_tile_bytes;
      for (int64_t c = 0; c < P.chunks; ++c) {
        const int b = P.chunk_bits[c], W = mma::words(b, P.kt);
        uint8_t* blk = tile + P.chunk_offsets[c];
        for (int lane = 0; lane < 32; ++lane) {
          lane_words.assign(W, 0u);
          for (int r = 0; r < 4 * P.kt; ++r) {
            const int j = r / 4, i = r % 4;
            const int row = mma::frag_row(lane, i);
            const int64_t col = c * 16 * P.kt + j * 16 + mma::frag_col(lane, i);
            const uint32_t lo = uz[size_t(row) * P.in + col], hi = uz[size_t(row) * P.in + col + 1];
            const int slot = mma::reg_slot(b, r);
            lane_words[mma::reg_word(b, r)] |= (lo << (b * slot)) | (hi << (16 + b * slot));
          }
          for (int w = 0; w < W; ++w) {
            const uint32_t v = lane_words[w];
            uint8_t* p = blk + mma::word_offset(w, W, lane);
            p[0] = uint8_t(v);
            p[1] = uint8_t(v >> 8);
            p[2] = uint8_t(v >> 16);
            p[3] = uint8_t(v >> 24);
          }
        }
      }
    }
  };
  if (nthreads == 1) {
    pack_tiles(0, P.row_tiles);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t per = (P.row_tiles + nthreads - 1) / nthreads;
  for (int64_t t = 0; t < nthreads; ++t) {
    const int64_t a = t * per, b = std::min(P.row_tiles, a + per);
    if (a < b) pool.emplace_back(pack_tiles, a, b);
  }
  for (std::thread& th : pool) th.join();
}

}  // namespace glvq
