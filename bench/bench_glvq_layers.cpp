// Relative layer loss tr(E H E^T) / tr(W H W^T) of GLVQ variants on real layers:
// the weights of a model directory and the Hessians a run kept
// (calib.keep_stats: true, <output_dir>/stats/block-<k>.h5).
//   bench_glvq_layers --model DIR --stats DIR [--blocks 0,3] [--bits 2] [--variants box,shaped]
//                     [--lloyd N] [--dim 8] [--group 128]
// Prints one row per layer and the mean per variant; the loss of a variant is
// that of its stored arrays (dequantize), so every variant is scored alike.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ckpt/h5_util.h"
#include "model/llama_config.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "quant/glvq.h"
#include "stats/stats_file.h"

using namespace glvq;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) v.push_back(x);
  return v;
}

BlockStats read_stats(const std::string& path) {
  nlohmann::json prov;
  {
    H5Handle f = h5_open_read(path, "statistics file");
    prov = h5_get_attr_json(f.id(), "provenance", path);
  }
  auto s = load_block_stats(path, prov);
  if (!s) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(1);
  }
  return *s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, stats, blocks = "0,3", variants = "box,shaped";
  double bits = 2;
  int dim = 8, group = 128, lloyd = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model = v;
    else if (k == "--stats") stats = v;
    else if (k == "--blocks") blocks = v;
    else if (k == "--variants") variants = v;
    else if (k == "--bits") bits = std::stod(v);
    else if (k == "--dim") dim = std::stoi(v);
    else if (k == "--group") group = std::stoi(v);
    else if (k == "--lloyd") lloyd = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (model.empty() || stats.empty()) {
    std::fprintf(stderr, "usage: bench_glvq_layers --model DIR --stats DIR [--blocks 0,3] [--bits 2] "
                         "[--variants box,shaped] [--lloyd N] [--dim 8] [--group 128]\n");
    return 2;
  }
  const LlamaConfig cfg = load_llama_config(model);
  ModelFiles files(model);
  const std::vector<std::string> vs = split(variants);
  std::map<std::string, std::pair<double, int>> mean;
  std::printf("| layer |");
  for (auto& v : vs) std::printf(" %s | s |", v.c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < vs.size(); ++i) std::printf("---|---|");
  std::printf("\n");
  for (const std::string& bs : split(blocks)) {
    const int b = std::stoi(bs);
    const BlockWeights w = load_block(files, cfg, b, at::Device(at::kCPU));
    const BlockStats st = read_stats(stats_path(stats, b));
    for (int l = 0; l < kNumLinears; ++l) {
      const Linear lin = static_cast<Linear>(l);
      const at::Tensor& W = w[lin];
      const at::Tensor& H = st.H[static_cast<int>(tap_of(lin))];
      const double ref = layer_loss(W, at::zeros_like(W), H);
      std::printf("| %d.%s |", b, linear_tensor_name(b, lin).c_str() + std::strlen("model.layers.") + bs.size() + 1);
      for (const std::string& v : vs) {
        GlvqOptions o;
        o.bits = bits;
        o.cfg.dim = dim;
        o.cfg.group_size = group;
        if (v == "shaped") {
          o.cfg.code = "shaped";
          o.cfg.lloyd_iters = lloyd;
        } else if (v == "shaped-scalar") {  // QuIP#-like: the shaped book with G = a I per group
          o.cfg.code = "shaped";
          o.cfg.lloyd_iters = 0;
          o.scalar_init = true;
        } else if (v.rfind("shaped-k", 0) == 0) {  // metric-aware search over K candidates
          o.cfg.code = "shaped";
          o.cfg.lloyd_iters = lloyd;
          o.cfg.candidates = std::stoi(v.substr(8));
        } else if (v == "shaped-init") {
          o.cfg.code = "shaped";
          o.cfg.lloyd_iters = 0;
        } else if (v != "box") {
          std::fprintf(stderr, "unknown variant %s\n", v.c_str());
          return 2;
        }
        auto t0 = std::chrono::steady_clock::now();
        const QuantizedLinear q = glvq_quantize_layer(W, H, linear_tensor_name(b, lin), o);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double rel = layer_loss(W, glvq_dequantize(q), H) / ref;
        mean[v].first += rel;
        mean[v].second += 1;
        std::printf(" %.5f | %.1f |", rel, sec);
        std::fflush(stdout);
      }
      std::printf("\n");
    }
  }
  std::printf("| mean |");
  for (auto& v : vs) std::printf(" %.5f | |", mean[v].first / std::max(1, mean[v].second));
  std::printf("\n");
  return 0;
}
