#pragma once
/// Fused GLVQ decode-GEMV / small-batch decode-GEMM on the GPU: y = W_hat x without
/// materialising W_hat. x: fp16 [batch, in] (row stride ldx), y: fp16 [batch, out]
/// (row stride ldy), batch 1..16, float accumulation.
///
/// Two paths:
///  - glvq_gemv_naive_launch: the checkpoint layout, any layer (mu > 0 too). Each weight
///    costs d multiply-adds plus an inverse companding on CUDA cores.
///  - glvq_gemv_mma_launch: layers with mu = 0 and group_size % 16 == 0 in the mma layout
///    (kernels/glvq_mma_layout.h): the activation is transformed per group once, then the
///    integer codes go through tensor cores; about 1.5 instructions per weight.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "glvq_device_params.h"
#include "glvq_mma_layout.h"
#include "quant/glvq_codec.h"

namespace glvq {

/// Scratch memory of the GEMV launchers, carved by glvq_gemv_workspace_init. yacc and
/// counters must be zero before the first launch; every launch leaves them zero again
/// (the split-K reduction cleans up after itself), so one workspace serves many calls
/// on one stream, but not two launches in flight at once.
struct GlvqGemvWorkspace {
  __half* xt = nullptr;     ///< max_batch * glvq_gemv_xt_cols(L): transformed activation
  float* psum = nullptr;    ///< max_batch * groups: per-group sums of xt
  float* yacc = nullptr;    ///< max_batch * out_pad: split-K accumulators (out_pad = 16 ceil(out/16))
  int* counters = nullptr;  ///< ceil(out/16): split-K arrival counters
  int max_batch = 0;
};

/// Multiprocessors of the current device (132 when it cannot be asked): the launchers size
/// their grids to one wave.
int glvq_sm_count();

/// Columns of the transformed activation xt per batch row: every group's vectors, a
/// narrower last vector padded to d (the shaped path's transform writes them all).
inline int64_t glvq_gemv_xt_cols(const GlvqLayout& L) {
  return (L.groups() - 1) * L.group_size + L.group_vecs(L.groups() - 1) * L.dim;
}
size_t glvq_gemv_workspace_bytes(const GlvqLayout& L, int max_batch);
/// Carves `base` (glvq_gemv_workspace_bytes bytes, device, 256-byte aligned) and zeroes it on `stream`.
cudaError_t glvq_gemv_workspace_init(const GlvqLayout& L, int max_batch, void* base, GlvqGemvWorkspace* ws,
                                     cudaStream_t stream);

/// y = W_hat x from the checkpoint layout (codes as glvq_encode_ref writes them); any
/// layer, a narrower last group included.
cudaError_t glvq_gemv_naive_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                   const __half* x, int64_t ldx, __half* y, int64_t ldy, int batch,
                                   const GlvqGemvWorkspace& ws, cudaStream_t stream);

/// A layer in the mma layout on the device (arrays from a GlvqMmaPlan, uploaded).
struct GlvqMmaDevice {
  const uint8_t* packed = nullptr;        ///< plan.bytes()
  const int64_t* chunk_offsets = nullptr; ///< plan.chunks + 1
  const uint8_t* chunk_bits = nullptr;    ///< plan.chunks
  int64_t out = 0, in = 0, row_tiles = 0, row_tile_bytes = 0, chunks = 0;
  int dim = 0, group_size = 0, kt = 0;
};
GlvqMmaDevice glvq_mma_device(const GlvqMmaPlan& plan, const uint8_t* packed, const int64_t* chunk_offsets,
                              const uint8_t* chunk_bits);

/// Knobs of the mma path (defaults are what bench_glvq_gemv chose on an H200).
struct GlvqGemvTuning {
  int splits = 0;         ///< K splits; 0: fill one wave of resident blocks, >= 2 chunks a warp
  int warps_per_sm = 64;  ///< cap on resident warps per multiprocessor assumed when splits == 0
  int unroll = 2;         ///< chunks (of equal bit width) whose loads are issued together: 1 or 2
  bool pdl = true;        ///< programmatic dependent launch of the GEMV after the transform (sm_90)
  bool subnormal = true;  ///< codes as fp16 subnormals uz * 2^-24 (no HSUB2 per register); false: 1024 + uz
};

/// y += W_tail x_tail: the contribution of the narrower last group of L (L.groups() >= 2,
/// gs not dividing in), on the straightforward path, added in float to the fp16 y that
/// is there. With glvq_gemv_mma_launch over the full groups (a GlvqMmaPlan of
/// out x (groups-1)*gs: the checkpoint codes of the full groups are a prefix of the
/// layer's), this is the fast path for such layers: only the last group runs slower.
/// P, CODES and X are the whole layer's.
cudaError_t glvq_gemv_tail_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                  const __half* x, int64_t ldx, __half* y, int64_t ldy, int batch,
                                  const GlvqGemvWorkspace& ws, cudaStream_t stream);

/// y = W_hat x for a layer with every mu_g = 0 (p supplies scale and G; bits and
/// group_offsets are not read). Two launches: the activation transform, then the GEMV.
/// Needs gs | in (the mma layout has whole groups only): for a narrower last group,
/// run it on the full groups and add glvq_gemv_tail_launch.
cudaError_t glvq_gemv_mma_launch(const GlvqMmaDevice& M, const GlvqDeviceParams& p, const __half* x, int64_t ldx,
                                 __half* y, int64_t ldy, int batch, const GlvqGemvWorkspace& ws,
                                 cudaStream_t stream, const GlvqGemvTuning& tune = {});

}  // namespace glvq
