#pragma once
/// glvq-bench's measurements (llama-bench's conventions): prompt processing
/// ppN (one forward of N tokens, batch 1) and text generation tgN (N decode
/// steps from an empty cache, at each batch size), each repeated and reported
/// as mean +- sample stddev of tokens/s; for tg also the bytes a step reads and
/// the bandwidth that makes, against a device copy measured in the same run.
/// docs/BENCH.md says how each figure is counted.
#include "gen/decoder.h"
#include "gen/gen_model.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace glvq {

struct BenchOptions {
  int pp = 512;                    ///< 0: no pp test
  int tg = 128;                    ///< 0: no tg tests
  std::vector<int> batches = {1};  ///< tg batch sizes (1..16)
  int repeats = 5;
  std::string device = "cuda";
  bool baseline = true;  ///< CUDA: also the fp16 dense model (dequantized weights, cuBLAS)
  bool graph = true;
  uint64_t seed = 0;
  std::string name;  ///< model label
};

struct BenchRow {
  std::string model, device, path, test;  ///< path: "glvq" (as the decoder runs it) or "fp16"
  double size_gib = 0, bits_per_weight = 0;
  int64_t params = 0;
  int batch = 1, tokens = 0;
  std::vector<double> tps;  ///< tokens/s of each repeat (all sequences of the batch counted)
  double mean = 0, stddev = 0;
  double step_bytes = 0;   ///< tg: bytes one decode step reads (weights + KV cache), 0 for pp
  double gbps = 0;         ///< tg: step_bytes * steps per second / 1e9
  double copy_gbps = 0;    ///< device-to-device copy, read + write, same run
  double bound_tps = 0;    ///< tg: tokens/s if every step moved step_bytes at the copy rate
  std::string linears;     ///< which linear kinds ran
  std::string note;
};

/// Device copy bandwidth in GB/s (bytes read + written / time) on DEVICE.
double measure_copy_gbps(const std::string& device);

/// Runs every test on MODEL; LOG gets progress lines (may be empty).
std::vector<BenchRow> run_bench(const GenModel& model, const BenchOptions& opt,
                                const std::function<void(const std::string&)>& log);

std::string bench_markdown(const std::vector<BenchRow>& rows);
nlohmann::json bench_json(const std::vector<BenchRow>& rows);

}  // namespace glvq
