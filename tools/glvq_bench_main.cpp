// glvq-bench: tokens per second of a checkpoint (pp, tg at several batch sizes) beside the fp16
// model, and a writer of random-code checkpoints at any Llama shape for such measurements.
#include "common/error.h"
#include "gen/gen_bench.h"
#include "gen/synth_checkpoint.h"
#include "tool_run.h"

#include <c10/core/GradMode.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) {
  std::string ckpt, synth_out, preset = "llama2-7b", output = "md", device = "auto", batches = "1,4,16", code = "box";
  glvq::GenModelOptions mo;
  mo.tokenizer = false;
  glvq::BenchOptions bo;
  glvq::SynthCheckpointOptions so;
  int blocks = 0;
  bool no_baseline = false, no_graph = false;
  CLI::App app{fmt::format(
      "glvq-bench {}: tokens per second of a glvq checkpoint, llama-bench style: pp<N> (one forward of N\n"
      "prompt tokens, batch 1) and tg<N> (N decode steps from an empty cache) at each batch size, each\n"
      "repeated -r times after one warm-up run (mean +- stddev), beside the same model with every linear\n"
      "dequantized to fp16 (cuBLAS), with the bytes a decode step reads against a device copy measured in\n"
      "the same run (docs/BENCH.md). With --synth-checkpoint OUT it writes a checkpoint of random valid\n"
      "codes at a preset's shape instead (for speed only: its text is noise).\n"
      "Exit codes: 0 ok, 1 unreadable checkpoint or runtime error, 2 bad command line.",
      GLVQ_GIT_COMMIT)};
  auto* co = app.add_option("--checkpoint", ckpt, "model.glvq.h5 to measure");
  app.add_option("--model", mo.model_dir, "model directory (default: the one recorded in the checkpoint)");
  app.add_option("--name", bo.name, "model label in the table (default: the checkpoint's directory name)");
  app.add_option("-p,--pp", bo.pp, "prompt tokens of the pp test, 0 = none (default 512)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-n,--tg", bo.tg, "generated tokens of the tg tests, 0 = none (default 128)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-b,--batch", batches, "tg batch sizes, comma-separated, 1..16 (default 1,4,16)");
  app.add_option("-r,--repetitions", bo.repeats, "repeats of each test (default 5)")->check(CLI::PositiveNumber);
  app.add_option("--device", device, "cpu, cuda, or auto (cuda when built; default)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("-o,--output", output, "md (default) or json")->check(CLI::IsMember({"md", "json"}));
  app.add_flag("--no-baseline", no_baseline, "skip the fp16 model");
  app.add_flag("--no-graph", no_graph, "launch every decode step instead of replaying a CUDA graph");
  app.add_option("--seed", bo.seed, "seed of the random token ids (default 0)");
  auto* sy = app.add_option("--synth-checkpoint", synth_out, "write a random-code checkpoint to this file and exit")
                 ->excludes(co);
  app.add_option("--preset", preset, "--synth-checkpoint: llama2-7b (default) or llama2-70b")
      ->check(CLI::IsMember(glvq::synth_preset_names()));
  app.add_option("--blocks", blocks, "--synth-checkpoint: layers (default: the preset's, 32 or 80)")
      ->check(CLI::PositiveNumber);
  app.add_option("--bits", so.bits, "--synth-checkpoint: code bits per weight (default 2)")->check(CLI::Range(1, 8));
  app.add_option("--dim", so.dim, "--synth-checkpoint: lattice dimension d (default 8)")->check(CLI::PositiveNumber);
  app.add_option("--group-size", so.group_size, "--synth-checkpoint: columns per group (default 128)")
      ->check(CLI::PositiveNumber);
  app.add_option("--code", code, "--synth-checkpoint: box (default) or shaped (the quantizer's default code)")
      ->check(CLI::IsMember({"box", "shaped"}));
  try {
    app.parse(argc, argv);
    if (!co->count() && !sy->count()) throw CLI::RequiredError("--checkpoint or --synth-checkpoint");
    bo.batches.clear();
    for (size_t a = 0; a <= batches.size();) {
      const size_t e = std::min(batches.find(',', a), batches.size());
      const std::string item = batches.substr(a, e - a);
      size_t used = 0;
      int v = 0;
      try {
        v = std::stoi(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != item.size() || v < 1 || v > 16)
        throw CLI::ValidationError("--batch", "'" + batches + "' is not a list of sizes 1..16");
      bo.batches.push_back(v);
      a = e + 1;
    }
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  return glvq::run_tool("glvq-bench", sy->count() ? synth_out : ckpt, [&]() {
    c10::NoGradGuard no_grad;
    if (sy->count()) {
      so.shaped = code == "shaped";
      so.shape = glvq::synth_preset(preset, blocks > 0 ? blocks : (preset == "llama2-7b" ? 32 : 80));
      glvq::write_synth_checkpoint(synth_out, so, [](int done, int total) {
        if (done % 28 == 0 || done == total) std::fprintf(stderr, "glvq-bench: synth layer %d / %d\n", done, total);
      });
      std::printf("glvq-bench: wrote %s (%s, %d layers, %d bits, %s code; random codes, for speed only)\n",
                  synth_out.c_str(), preset.c_str(), so.shape.blocks, so.bits, code.c_str());
      return 0;
    }
    if (device == "auto") device = glvq::gen_cuda_built() ? "cuda" : "cpu";
    bo.device = device;
    bo.baseline = !no_baseline;
    bo.graph = !no_graph;
    if (bo.name.empty()) bo.name = std::filesystem::path(ckpt).parent_path().filename().string();
    if (bo.name.empty()) bo.name = ckpt;
    const glvq::GenModel model(ckpt, mo);
    const auto rows = glvq::run_bench(model, bo, [](const std::string& s) {
      std::fprintf(stderr, "glvq-bench: %s\n", s.c_str());
    });
    if (output == "json") {
      std::printf("%s\n", glvq::bench_json(rows).dump(2).c_str());
    } else {
      std::printf("%s", glvq::bench_markdown(rows).c_str());
    }
    return 0;
  });
}
