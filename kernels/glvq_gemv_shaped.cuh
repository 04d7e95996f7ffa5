#pragma once
/// Fused decode-GEMV / small-batch decode-GEMM for the shaped code (quant/glvq_codebook.h):
/// y = W_hat x straight from the checkpoint's codes, batch 1..16, fp16 in and out,
/// float accumulation. Host-includable.
///
/// A shaped vector decodes to w = s_g G_g c (mu = 0), so y_r = sum_v (s_g G_g^T x_v) . c_rv:
/// the activation is transformed once per d-vector (xt, in the workspace), and each
/// 8-coordinate sub-code c then costs one table lookup, its signs and a share of a
/// tensor-core product: the 2-bit book's 1024 magnitude patterns (fp16, 16 KB) sit in
/// shared memory with each pattern's parity in the sign bits of coordinates 3 and 7, so a
/// sub-code is one 16-byte read and a few bit operations. Codes stay in the checkpoint's
/// layout: no repacking at load time.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "glvq_device_params.h"
#include "glvq_gemv.cuh"
#include "quant/glvq_codec.h"

namespace glvq {

/// The work list of a shaped layer (version 1): chunks of at most 16 consecutive sub-codes
/// (128 coordinates) of one group, four ints each: group, first sub-code in the group's row,
/// count | sub-codes per row << 16, and 1 when every lane can read its four sub-codes as
/// aligned 32-bit words. OFFSETS = glvq_group_offsets (host).
std::vector<int32_t> glvq_shaped_gemv_chunks(const GlvqLayout& L, const uint8_t* bits, const int64_t* offsets);

/// The same chunks for version 2, four ints each, so that the kernel needs no other table:
/// the byte of row 0's first sub-code of the chunk in the layer's codes (unsigned), the
/// group's bytes per row, n | b << 8 | aligned << 12 (n sub-codes of b bits; aligned as
/// above), and the chunk's first column of the transformed activation.
std::vector<int32_t> glvq_shaped_gemv_work(const GlvqLayout& L, const uint8_t* bits, const int64_t* offsets);

/// Why the fused shaped path cannot run this layer ("" when it can): not the shaped code,
/// d not a multiple of 8, a group with mu != 0 or bits outside 1..8, codes over 4 GiB. Host arrays.
std::string glvq_gemv_shaped_unsupported(const GlvqLayout& L, const uint8_t* bits, const float* mu);

/// A shaped layer on the device: codes in the checkpoint layout, its work lists (uploaded
/// glvq_shaped_gemv_chunks for version 1 with p.bits and p.group_offsets, glvq_shaped_gemv_work
/// for version 2), and p.scale / G for the activation transform.
struct GlvqShapedDevice {
  GlvqLayout L;
  const uint8_t* codes = nullptr;
  const int32_t* chunks = nullptr;  ///< version 1: 4 per chunk
  const int32_t* work = nullptr;    ///< version 2: 4 per chunk (may be null when only version 1 runs)
  int64_t nchunks = 0;
  /// The widest group's bits (glvq_shaped_max_bits); at most 4 lets version 2 load every
  /// chunk ahead. Too small is an error the kernel cannot see: the chunks it cannot decode give wrong sums.
  int max_bits = 8;
};

/// The largest of BITS over L's groups (host).
int glvq_shaped_max_bits(const GlvqLayout& L, const uint8_t* bits);

/// Knobs (bench_glvq_gemv --codes shaped sweeps them).
struct GlvqShapedTuning {
  int splits = 0;         ///< K splits; 0: about one wave of resident blocks
  int warps_per_sm = 48;  ///< resident warps per multiprocessor assumed when splits == 0
  bool pdl = true;        ///< programmatic dependent launch of the GEMV after the transform
  /// 1: each chunk's codes loaded when decoded (the measured default); 2: the next chunk's
  /// codes loaded ahead (not yet run on a GPU: docs/BENCH.md)
  int version = 1;
};

/// Copies the codebooks to the current device (once per device; a launch does it too,
/// except inside a CUDA graph capture, where it must have happened before).
cudaError_t glvq_gemv_shaped_prepare();

/// y = W_hat x. Two launches (activation transform, GEMV with split-K in the workspace,
/// which must come from glvq_gemv_workspace_init for L and be idle). Errors:
/// cudaErrorInvalidValue for an unsupported layer or arguments.
cudaError_t glvq_gemv_shaped_launch(const GlvqShapedDevice& M, const GlvqDeviceParams& p, const __half* x, int64_t ldx,
                                    __half* y, int64_t ldy, int batch, const GlvqGemvWorkspace& ws,
                                    cudaStream_t stream, const GlvqShapedTuning& tune = {});

}  // namespace glvq
