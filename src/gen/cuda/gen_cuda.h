#pragma once
/// The CUDA side of the Decoder (src/gen/decoder.h), compiled only where LibTorch
/// has CUDA (GLVQ_WITH_TORCH_CUDA): the fused GLVQ linear and the graph-captured step.
#include "gen/decoder.h"
#include "quant/quantizer.h"

#include <functional>
#include <memory>
#include <string>

namespace glvq {

/// Fills W (device cuda:0, fp16 activations) from MODEL: fused GLVQ linears where the
/// layer allows (unless DENSE), dense fp16 otherwise.
void cuda_build_weights(const GenModel& model, bool dense, GenWeights& w, Decoder::CudaState& st);

/// One linear for the GPU: fused when Q is a GLVQ box-code layer with every mu = 0 and
/// group_size % 16 == 0 (and !DENSE), else Q dequantized to fp16.
std::unique_ptr<GenLinear> cuda_make_linear(const QuantizedLinear& q, bool dense, Decoder::CudaState& st);

std::unique_ptr<Decoder::CudaState> cuda_state_new(bool graph);
void cuda_state_reset(Decoder::CudaState& st);
/// Decoder::forward on the GPU (the decoder's stream; graph replay for n = 1).
at::Tensor cuda_forward(Decoder::CudaState& st, const GenWeights& w, KvCache& cache, const at::Tensor& tokens,
                        int64_t pos, bool all_logits);
/// Runs F with the decoder's stream current.
void cuda_on_stream(Decoder::CudaState& st, const std::function<void()>& f);
void cuda_synchronize(Decoder::CudaState& st);
std::string cuda_device_name();
/// cudaMemGetInfo's free bytes after LibTorch's cache is emptied.
int64_t cuda_free_bytes();

}  // namespace glvq
