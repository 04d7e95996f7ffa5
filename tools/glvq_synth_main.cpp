// glvq-synth: a Llama-shaped model directory with random, trained-looking weights
// (Llama-2-70B's shape by default) for measuring time and memory at real shapes.
#include "common/error.h"
#include "model/synth_model.h"
#include "tool_run.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <utility>
#include <cstdio>

int main(int argc, char** argv) {
  glvq::SynthOptions opt;
  std::string out, preset = "llama2-70b";
  int blocks = 2, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, vocab = 0;  // 0: the preset's
  uint64_t shard_bytes = 0;
  double shard_gb = 0;
  CLI::App app{fmt::format(
      "glvq-synth {}: write a Hugging Face Llama directory (config.json, bf16 safetensors shards with\n"
      "model.safetensors.index.json, tokenizer) with K blocks of random weights. The shape is a preset's\n"
      "(llama2-70b: hidden 8192, intermediate 28672, 64 heads, 8 KV heads, vocab 32000, rope_theta 1e4,\n"
      "rms_norm_eps 1e-5, 4096 positions) with any of --hidden .. --vocab replacing its value. The weights\n"
      "imitate what matters to quantization (docs/SYNTH.md); perplexity on it means nothing. The model is\n"
      "written into OUT.tmp-<pid> and renamed to OUT when complete.\n"
      "Exit codes: 0 ok, 1 write error, 2 bad command line.",
      GLVQ_GIT_COMMIT)};
  app.add_option("--out", out, "output directory (must not exist unless --force)")->required();
  app.add_option("--preset", preset, "shape to start from (default llama2-70b)")
      ->check(CLI::IsMember(glvq::synth_preset_names()));
  app.add_option("--blocks", blocks, "number of transformer blocks K (default 2)")->check(CLI::PositiveNumber);
  app.add_option("--hidden", hidden, "hidden size (llama2-70b: 8192)")->check(CLI::PositiveNumber);
  app.add_option("--intermediate", intermediate, "MLP size (llama2-70b: 28672)")->check(CLI::PositiveNumber);
  app.add_option("--heads", heads, "attention heads (llama2-70b: 64)")->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", kv_heads, "key/value heads (llama2-70b: 8)")->check(CLI::PositiveNumber);
  app.add_option("--vocab", vocab, "vocabulary size (llama2-70b: 32000)")->check(CLI::PositiveNumber);
  app.add_option("--seed", opt.seed, "seed of every weight (default 0)");
  app.add_option("--tokenizer-from", opt.tokenizer_from,
                 "copy tokenizer.model from this directory (default models/tiny-llama; its ids must fit --vocab)");
  auto* sb = app.add_option("--shard-bytes", shard_bytes,
                            "weight bytes per shard: a number of bytes or with a unit, e.g. 5GB, 200MB, 64KiB "
                            "(default 5GB; a tensor is never split, so a shard holds at least one)")
                 ->transform(CLI::AsSizeValue(true))
                 ->check(CLI::PositiveNumber);
  app.add_option("--shard-gb", shard_gb, "the same in GB (1e9 bytes)")->check(CLI::PositiveNumber)->excludes(sb);
  app.add_option("--threads", opt.threads, "generator threads (default: all cores)");
  app.add_flag("--force", opt.overwrite, "replace --out if it exists");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  if (shard_bytes > 0) opt.shard_bytes = shard_bytes;
  if (shard_gb > 0) opt.shard_bytes = static_cast<uint64_t>(shard_gb * 1e9);
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&]() { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  int last_pct = -1;
  return glvq::run_tool("glvq-synth", out, [&]() {
    opt.shape = glvq::synth_preset(preset, blocks);
    using Override = std::pair<int, int*>;
    for (const Override& o : {Override{hidden, &opt.shape.hidden}, Override{intermediate, &opt.shape.intermediate},
                              Override{heads, &opt.shape.heads}, Override{kv_heads, &opt.shape.kv_heads},
                              Override{vocab, &opt.shape.vocab}})
      if (o.first > 0) *o.second = o.first;
    glvq::synth_write_model(out, opt, [&](uint64_t done, uint64_t total) {
      const int pct = static_cast<int>(100.0 * done / total);
      if (pct >= last_pct + 5 || done == total) {
        last_pct = pct;
        const double s = secs();
        std::fprintf(stderr, "glvq-synth: %3d%%  %.2f / %.2f GB  %.0f s  ETA %.0f s\n", pct, done / 1e9, total / 1e9,
                     s, done ? s * (total - done) / done : 0.0);
      }
    });
    std::printf("glvq-synth: wrote %s (blocks %d, hidden %d) in %.1f s\n", out.c_str(), opt.shape.blocks,
                opt.shape.hidden, secs());
    return 0;
  });
}
