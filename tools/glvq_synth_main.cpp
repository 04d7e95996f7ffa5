// glvq-synth: a Llama-shaped model directory with random, trained-looking weights
// (Llama-2-70B's shape by default) for measuring time and memory at real shapes.
#include "common/error.h"
#include "model/synth_model.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

int main(int argc, char** argv) {
  glvq::SynthOptions opt;
  opt.shape = glvq::synth_llama2_70b(2);
  std::string out;
  double shard_gb = 5.0;
  CLI::App app{fmt::format(
      "glvq-synth {}: write a Hugging Face Llama directory (config.json, bf16 safetensors shards with\n"
      "model.safetensors.index.json, tokenizer) with K blocks of random weights shaped like Llama-2-70B\n"
      "(hidden 8192, intermediate 28672, 64 heads, 8 KV heads, vocab 32000) unless overridden. The weights\n"
      "imitate what matters to quantization (docs/SYNTH.md); perplexity on it means nothing.\n"
      "Exit codes: 0 ok, 1 write error, 2 bad command line.",
      GLVQ_GIT_COMMIT)};
  app.add_option("--out", out, "output directory (must not exist unless --force)")->required();
  app.add_option("--blocks", opt.shape.blocks, "number of transformer blocks K (default 2)")->check(CLI::PositiveNumber);
  app.add_option("--hidden", opt.shape.hidden, "hidden size (default 8192)")->check(CLI::PositiveNumber);
  app.add_option("--intermediate", opt.shape.intermediate, "MLP size (default 28672)")->check(CLI::PositiveNumber);
  app.add_option("--heads", opt.shape.heads, "attention heads (default 64)")->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", opt.shape.kv_heads, "key/value heads (default 8)")->check(CLI::PositiveNumber);
  app.add_option("--vocab", opt.shape.vocab, "vocabulary size (default 32000)")->check(CLI::PositiveNumber);
  app.add_option("--seed", opt.seed, "seed of every weight (default 0)");
  app.add_option("--tokenizer-from", opt.tokenizer_from,
                 "copy tokenizer.model from this directory (default models/tiny-llama; its ids must fit --vocab)");
  app.add_option("--shard-gb", shard_gb, "weight bytes per shard, GB (default 5)")->check(CLI::PositiveNumber);
  app.add_option("--threads", opt.threads, "generator threads (default: all cores)");
  app.add_flag("--force", opt.overwrite, "replace --out if it exists");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  opt.shard_bytes = static_cast<uint64_t>(shard_gb * 1e9);
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&]() { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  int last_pct = -1;
  try {
    glvq::synth_write_model(out, opt, [&](uint64_t done, uint64_t total) {
      const int pct = static_cast<int>(100.0 * done / total);
      if (pct >= last_pct + 5 || done == total) {
        last_pct = pct;
        const double s = secs();
        std::fprintf(stderr, "glvq-synth: %3d%%  %.2f / %.2f GB  %.0f s  ETA %.0f s\n", pct, done / 1e9, total / 1e9,
                     s, done ? s * (total - done) / done : 0.0);
      }
    });
  } catch (const glvq::Error& e) {
    std::fprintf(stderr, "glvq-synth: error: %s\n", e.message().c_str());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "glvq-synth: error: %s: %s\n", out.c_str(), e.what());
    return glvq::kExitError;
  }
  std::printf("glvq-synth: wrote %s (%d blocks, hidden %d) in %.1f s\n", out.c_str(), opt.shape.blocks,
              opt.shape.hidden, secs());
  return 0;
}
