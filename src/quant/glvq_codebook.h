#pragma once
/// The shaped codebooks of GLVQ's "shaped" code kind: fixed point sets in R^8
/// designed for unit Gaussian data (bench/train_codebook.cpp trained them; the
/// tables are quant/glvq_codebook_tables.h). A group's generator G transforms
/// them: the d-vector of a group decodes to G c with c the concatenation of its
/// d/8 sub-codewords, so learning moves the lattice-like code, the table stays.
///
/// A sub-code of width b bits per coordinate has 8b bits, made of residual
/// stages (LSB first): b/2 stages of the 2-bit book, then one stage of the
/// 1-bit book when b is odd. Its codeword is c = sum_s beta_b[s] * v_s(k_s),
/// beta_b[0] = 1, accumulated in float with fmaf, stage 0 first, from 0.
///
/// - 2-bit book (16 bits): 1024 magnitude patterns a_i >= 0 with a required
///   parity p_i (bit h: the number of negative coordinates among 4h..4h+3 is
///   odd). Bits 0-2 are the signs (1 = negative) of coordinates 0-2, bits 3-5
///   those of 4-6, bits 6-15 the pattern i; the signs of coordinates 3 and 7
///   complete each half's parity. 65536 points, 0.088 MSE per coordinate on
///   N(0, 1) against 0.119 for the 2-bit box (bench_glvq_codebook).
/// - 1-bit book (8 bits): 256 signed points.
///
/// Encoding is the nearest codeword in Euclidean distance: exact for b <= 2
/// (every point of the book is compared), a beam search over the stages for b > 2.
/// All arithmetic is single IEEE float operations (kernels/glvq_math.h), so a
/// CUDA encoder reproduces the codes bit for bit.
#include <cstdint>

namespace glvq {

constexpr int kShapedBlock = 8;       ///< coordinates per sub-code
constexpr int kShapedBookVersion = 1; ///< stored as the layer attribute "codebook"

/// Stages of a b-bit sub-code (b = 1..8): their count and each stage's book (1 or 2 bits).
struct GlvqShapedStages {
  int count = 0;
  int book[4] = {0, 0, 0, 0};
  float beta[4] = {0, 0, 0, 0};  ///< scale of each stage, beta[0] = 1
};
GlvqShapedStages glvq_shaped_stages(int bits);

/// c(k) of a b-bit sub-code K (8b bits), 8 floats.
void glvq_shaped_decode(int bits, uint64_t code, float* c);

/// The nearest b-bit codeword to y (8 floats); *dist (if given) gets ||y - c||^2.
uint64_t glvq_shaped_encode(int bits, const float* y, float* dist = nullptr);

/// Most candidates one search returns (quant.glvq.candidates' upper bound).
constexpr int kMaxCandidates = 16;

/// Candidates for y: the K nearest points of the first stage (ascending), each
/// completed greedily through the later stages. K <= kMaxCandidates; returns how many.
int glvq_shaped_candidates(int bits, const float* y, int K, uint64_t* codes);

/// How many first-stage candidates glvq_shaped_encode follows at B bits (1 for
/// a single stage). The candidates of any K >= this begin with the same codes.
int glvq_shaped_beam(int bits);

/// Of N candidates (from glvq_shaped_candidates), the one glvq_shaped_encode
/// picks: the least decoded distance, the first of equals; *dist as there.
uint64_t glvq_shaped_pick_nearest(int bits, const float* y, const uint64_t* cand, int n, float* dist = nullptr);

/// The K best codes of one book (1 or 2 bits) for y, ascending distance (ties:
/// lower pattern first); K <= 16. Writes codes[k], dist[k]; returns how many.
int glvq_shaped_kbest(int book, const float* y, int K, uint64_t* codes, float* dist);

/// Number of points in the b-bit code: 2^(8b).
double glvq_shaped_points(int bits);

}  // namespace glvq
