// glvq-export: a glvq checkpoint as a dequantized Hugging Face model directory.
#include "ckpt/export.h"
#include "common/error.h"
#include "tool_run.h"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  std::string file, dir;
  glvq::ExportOptions opt;
  double max_shard_gb = 5.0;
  CLI::App app{fmt::format(
      "glvq-export {}: write a checkpoint (model.glvq.h5) as a Hugging Face model directory that\n"
      "transformers (or glvq-worker with quant.method none) loads: model.safetensors with every quantized\n"
      "linear dequantized to the model's dtype (config.json torch_dtype) and the unquantized tensors as\n"
      "stored, config.json, and the tokenizer files of the model the checkpoint was made from.\n"
      "Exit codes: 0 ok, 1 unreadable/invalid file or write error, 2 bad command line, 3 stopped by\n"
      "SIGTERM/SIGUSR1 (the files written so far are whole, the directory is incomplete: run it again).",
      GLVQ_GIT_COMMIT)};
  app.add_option("FILE", file, "model.glvq.h5")->required();
  app.add_option("DIR", dir, "output directory (created if needed; files in it are replaced)")->required();
  app.add_option("--tokenizer-from", opt.tokenizer_dir,
                 "copy the tokenizer from this directory (default: the model.path recorded in the checkpoint)");
  app.add_option("--max-shard-gb", max_shard_gb, "shard the weights above this size (GB, default 5)")
      ->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  glvq::answer_preemption();
  return glvq::run_tool("glvq-export", file, [&]() {
    opt.max_shard_bytes = static_cast<uint64_t>(max_shard_gb * 1e9);
    const glvq::ExportResult r = glvq::export_checkpoint(file, dir, opt);
    for (const std::string& w : r.warnings) std::fprintf(stderr, "glvq-export: warning: %s\n", w.c_str());
    std::printf("glvq-export: wrote %s (linears dequantized to %s):", dir.c_str(), r.dtype.c_str());
    for (const std::string& f : r.files) std::printf(" %s", f.c_str());
    std::printf("\n");
    return 0;
  });
}
