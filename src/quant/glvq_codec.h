#pragma once
/// The GLVQ code format, defined by this plain CPU reference (no LibTorch):
/// kernels/ (CUDA) must reproduce it bit for bit (encode) or within 1 ulp (decode).
///
/// A layer W [out, in] is cut into column groups of gs columns (gs a multiple of
/// d): groups = ceil(in/gs), group g holding columns [g*gs, g*gs + cols_g) with
/// cols_g = min(gs, in - g*gs), so only the last group can be narrower. Each
/// row's slice of group g is cut into V_g = ceil(cols_g/d) vectors of d
/// consecutive weights; when d does not divide cols_g (only possible in the
/// last group) its last vector holds n = cols_g - (V_g - 1)*d < d weights and is
/// padded: encode treats its coordinates n..d-1 as u = 0, they are stored like
/// any others, and decode computes them and drops them (they are never weights).
/// Group g has: bit width b_g (1..8), scale s_g > 0, mu_g >= 0 (0 = no
/// companding), generation matrix G_g (d x d, row-major) and its inverse.
///
///   companding  u = c(w) = sign(w) * ln(1 + mu|w|/s) / ln(1 + mu)   (mu > 0)
///                        = w / s                                      (mu = 0)
///   encode      y = G^-1 u;  z_i = clamp(floor(y_i), -2^(b-1), 2^(b-1) - 1)
///               (Babai rounding onto the coset G(Z^d + 1/2): the nearest point
///                of Z + 1/2 to y_i is floor(y_i) + 1/2; ties, y_i integer, go up to y_i + 1/2)
///   decode      u' = G (z + 1/2);  w' = sign(u') * s * ((1 + mu)^|u'| - 1) / mu   (mu > 0)
///                                   w' = s * u'                                   (mu = 0)
///
/// Packed layout ("codes" array, uint8): group-major; inside a group row-major
/// over (row, vector); each vector's d codes are stored as unsigned (z + 2^(b-1))
/// in b bits each, LSB first, and padded to a whole number of bytes, so a vector
/// takes vec_bytes(d, b) = ceil(d*b/8) bytes. Group g starts at byte
/// group_offset(g) = sum over g' < g of out * V_g' * vec_bytes(d, b_g'); vector
/// v of row r of group g at group_offset(g) + (r*V_g + v) * vec_bytes(d, b_g).
/// A layer whose groups are all full (gs | in) has V_g = gs/d everywhere: the
/// layout of files written before narrower groups existed, unchanged.
/// Floating-point order: y_i = sum_j Ginv[i][j] * u_j and u'_i = sum_j G[i][j] * t_j
/// accumulate in float with fmaf, j ascending, starting from 0.
///
/// Shaped code (code = shaped; d a multiple of 8, mu = 0): the same y = G^-1 (w / s),
/// then each 8 coordinates of y take the nearest codeword of the b-bit shaped
/// code (glvq_shaped_encode); t is the concatenation of the d/8 codewords and
/// w' = s * G t as above. A vector's d/8 sub-codes are its d*b bits, sub-code k
/// at bit 8*b*k (= byte b*k), each little-endian; same vec_bytes as the box.
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define GLVQ_LAYOUT_HD __host__ __device__
#else
#define GLVQ_LAYOUT_HD
#endif

namespace glvq {

/// Code kinds (the layer attribute "code"): the box of integer coordinates
/// above, or the shaped codebooks of quant/glvq_codebook.h.
enum class GlvqCode : int { box = 0, shaped = 1 };

struct GlvqLayout {
  int64_t out = 0, in = 0;
  int dim = 8;          ///< d
  int group_size = 128; ///< gs (a multiple of dim; the last group may be narrower)
  GlvqCode code = GlvqCode::box;
  /// ceil(in / gs).
  GLVQ_LAYOUT_HD int64_t groups() const { return (in + group_size - 1) / group_size; }
  /// Vectors per row of a full group, gs / d.
  GLVQ_LAYOUT_HD int64_t vecs_per_row() const { return group_size / dim; }
  /// cols_g: gs, or what is left of the row for the last group.
  GLVQ_LAYOUT_HD int64_t group_cols(int64_t g) const {
    const int64_t left = in - g * group_size;
    return left < group_size ? left : group_size;
  }
  /// V_g = ceil(cols_g / d): vectors per row of group g.
  GLVQ_LAYOUT_HD int64_t group_vecs(int64_t g) const { return (group_cols(g) + dim - 1) / dim; }
  /// True when every group is full (gs | in): the layout has no narrower group.
  GLVQ_LAYOUT_HD bool full_groups() const { return in % group_size == 0; }
};

inline int64_t glvq_vec_bytes(int dim, int bits) { return (int64_t(dim) * bits + 7) / 8; }
/// Byte offset of every group in the codes array; size groups + 1 (last = total bytes).
std::vector<int64_t> glvq_group_offsets(const GlvqLayout& L, const uint8_t* bits);

/// Per-group parameters, float32 on the host. Sizes: bits[groups],
/// scale[groups], mu[groups], G[groups*d*d], Ginv[groups*d*d].
struct GlvqGroupParams {
  const uint8_t* bits;
  const float* scale;
  const float* mu;
  const float* G;
  const float* Ginv;
};

float glvq_compand(float w, float s, float mu);     ///< c(w)
float glvq_expand(float u, float s, float mu);      ///< c^-1(u)

/// Encodes W (row-major [out, in], float) into `codes` (size group_offsets.back()).
void glvq_encode_ref(const GlvqLayout& L, const GlvqGroupParams& p, const float* W, uint8_t* codes);
/// Decodes codes into W_hat (row-major [out, in], float).
void glvq_decode_ref(const GlvqLayout& L, const GlvqGroupParams& p, const uint8_t* codes, float* W_hat);
/// The code coordinates t of every vector (w' = expand(s * G t), see above): for each
/// group g in order, out * V_g * d floats, row-major over (row, vector, coordinate),
/// the padded coordinates of a narrower last vector included (decode drops them).
/// Size of T: sum over g of out * V_g * d. Shaped: the concatenated codewords; box: z + 1/2.
void glvq_code_coords_ref(const GlvqLayout& L, const uint8_t* bits, const uint8_t* codes, float* t);
/// y = W_hat x from the codes (x size in, y size out), accumulating in float.
void glvq_gemv_ref(const GlvqLayout& L, const GlvqGroupParams& p, const uint8_t* codes, const float* x, float* y);

/// Packs/unpacks one vector of d codes (unsigned values < 2^b) LSB first.
void glvq_pack_vec(const int32_t* uz, int dim, int bits, uint8_t* out);
void glvq_unpack_vec(const uint8_t* in, int dim, int bits, int32_t* uz);

}  // namespace glvq
