#pragma once
/// A GenModel ready to run on one device with a KV cache: glvq-generate's and
/// glvq-bench's engine. CPU: every linear dequantized once by the codec
/// reference (fp32). CUDA: fp16 activations; GLVQ layers without companding run
/// a fused decode-GEMV (box code: kernels/glvq_gemv.cu on the mma layout; shaped
/// code: kernels/glvq_gemv_shaped.cu on the checkpoint's codes), with the
/// incoherence transform on the activations (kernels/glvq_orth.cu); every other
/// layer (mu > 0, RTN/GPTQ, a box layer the mma layout cannot hold) is dequantized
/// once to fp16 and runs through cuBLAS. A decode step (one token per sequence) is
/// captured once into a CUDA graph and replayed.
#include "gen/gen_forward.h"
#include "gen/gen_model.h"

#include <memory>
#include <string>

namespace glvq {

struct DecoderOptions {
  std::string device = "cpu";  ///< "cpu" or "cuda"
  bool dense = false;          ///< CUDA: every linear dequantized to fp16 + cuBLAS (the fp16 baseline)
  bool cuda_graph = true;      ///< CUDA: replay decode steps from a captured graph
};

/// True when this build can run the CUDA path (nvcc and a LibTorch with CUDA).
bool gen_cuda_built();
/// Free memory of DEVICE in bytes after returning LibTorch's cached blocks; -1 for the CPU.
int64_t gen_free_device_bytes(const std::string& device);

class Decoder {
 public:
  /// Builds the weights on the device; throws glvq::Error for an unknown
  /// device or a CUDA path this build does not have.
  Decoder(const GenModel& model, const DecoderOptions& opt);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  /// Empties the cache and sizes it for BATCH sequences of at most MAX_LEN
  /// tokens (MAX_LEN <= the model's max_position_embeddings).
  void reset(int64_t batch, int64_t max_len);
  /// Appends TOKENS [batch, n] (int64, CPU) to every sequence at positions
  /// pos()..pos()+n-1; returns fp32 logits on the device, [batch, n, vocab]
  /// with ALL_LOGITS, else [batch, vocab] of the last position. The result of a
  /// graph-replayed step is overwritten by the next step: use it before that.
  at::Tensor forward(const at::Tensor& tokens, bool all_logits = false);
  int64_t pos() const { return pos_; }
  int64_t max_len() const { return cache_.max_len; }
  /// Waits for the device (for timing).
  void synchronize();

  const GenWeights& weights() const { return w_; }
  const KvCache& cache() const { return cache_; }
  /// "cpu" or the GPU's name.
  std::string device_name() const;
  /// Linears by kind ("glvq fused" -> count, ...), for the summary line.
  std::string linear_kinds() const;

  struct CudaState;

 private:
  DecoderOptions opt_;
  GenWeights w_;
  KvCache cache_;
  int64_t pos_ = 0;
  std::unique_ptr<CudaState> cuda_;
};

}  // namespace glvq
