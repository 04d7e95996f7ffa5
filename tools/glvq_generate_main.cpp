// glvq-generate: text from a quantized checkpoint (model.glvq.h5), on the CPU or the GPU.
#include "common/error.h"
#include "eval/corpus.h"
#include "gen/decoder.h"
#include "gen/generate.h"
#include "tool_run.h"

#include <c10/core/GradMode.h>

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  std::string ckpt, prompt, prompt_file, device = "auto", ppl_file;
  glvq::GenModelOptions mo;
  glvq::GenerateOptions go;
  glvq::DecoderOptions dopt;
  bool ignore_eos = false, no_graph = false;
  int ctx = 1024, max_chunks = 0;
  CLI::App app{fmt::format(
      "glvq-generate {}: generate text from a glvq checkpoint. The quantized linears come from the\n"
      "checkpoint; the tokenizer (and any tensor the checkpoint lacks) from the model directory it records\n"
      "(config model.path) or --model. Greedy unless --temperature > 0. The text streams to stdout, then\n"
      "one summary line: prompt tokens, generated tokens, prefill tok/s, decode tok/s.\n"
      "--device cuda runs the fused GLVQ decode-GEMV per linear with the decode step in a CUDA graph;\n"
      "cpu runs weights dequantized once by the codec reference (slow; for checking).\n"
      "With --perplexity FILE it prints the perplexity of FILE instead (validate's protocol).\n"
      "Exit codes: 0 ok, 1 unreadable/invalid checkpoint, model directory or file, 2 bad command line or prompt,\n"
      "3 stopped by SIGTERM/SIGUSR1 (between two tokens; the text so far was printed).",
      GLVQ_GIT_COMMIT)};
  app.add_option("--checkpoint", ckpt, "model.glvq.h5 written by glvq-worker")->required();
  app.add_option("--model", mo.model_dir, "model directory (default: the model.path recorded in the checkpoint)");
  auto* po = app.add_option("--prompt", prompt, "prompt text");
  auto* pf = app.add_option("--prompt-file", prompt_file, "read the prompt from this file")->excludes(po);
  auto* pp = app.add_option("--perplexity", ppl_file, "text file: print its perplexity instead of generating")
                 ->excludes(po)
                 ->excludes(pf);
  app.add_option("--max-new-tokens", go.max_new_tokens, "tokens to generate at most (default 128)")
      ->check(CLI::PositiveNumber);
  app.add_option("--temperature", go.sampler.temperature, "sampling temperature; 0 = greedy (default 0)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", go.sampler.top_p, "nucleus sampling mass in (0, 1] (default 1)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", go.sampler.seed, "sampling seed (default 0)");
  app.add_flag("--ignore-eos", ignore_eos, "keep generating past the end-of-sequence token");
  app.add_option("--device", device, "cpu, cuda, or auto (cuda when built and present; default)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_flag("--no-graph", no_graph, "cuda: launch every decode step instead of replaying a CUDA graph");
  app.add_flag("--dense", dopt.dense, "cuda: dequantize every linear to fp16 (the baseline) instead of fused GEMV");
  app.add_option("--ctx", ctx, "--perplexity: tokens per chunk (default 1024)")->check(CLI::Range(2, 1 << 20));
  app.add_option("--max-chunks", max_chunks, "--perplexity: chunks at most, 0 = all (default 0)")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
    if (!pp->count() && !po->count() && !pf->count())
      throw CLI::RequiredError("--prompt, --prompt-file or --perplexity");
    if (go.sampler.top_p <= 0) throw CLI::ValidationError("--top-p", "must be in (0, 1]");
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  glvq::answer_preemption();
  return glvq::run_tool("glvq-generate", ckpt, [&]() {
    c10::NoGradGuard no_grad;
    go.stop_at_eos = !ignore_eos;
    dopt.cuda_graph = !no_graph;
    // Everything that can be refused is checked before the first byte goes to stdout.
    if (pf->count()) prompt = glvq::read_text_file(prompt_file);
    if (device == "auto") device = glvq::gen_cuda_built() ? "cuda" : "cpu";
    dopt.device = device;
    const glvq::GenModel model(ckpt, mo);
    const glvq::Tokenizer& tok = model.tokenizer();
    if (pp->count()) {
      const std::vector<int32_t> ids = glvq::tokenize_corpus(tok, glvq::read_text_file(ppl_file));
      GLVQ_USAGE_CHECK(ctx <= model.config().max_positions, "--ctx {} exceeds the model's context of {} tokens", ctx,
                       model.config().max_positions);
      const at::Tensor chunks = glvq::make_eval_chunks(ids, ctx, max_chunks, ppl_file);
      glvq::Decoder dec(model, dopt);
      const glvq::PerplexityResult r = glvq::gen_perplexity(dec, chunks);
      std::printf("glvq-generate: perplexity %.6f over %lld chunks of %lld tokens (%s)\n", r.ppl,
                  static_cast<long long>(r.chunks), static_cast<long long>(r.ctx), dec.device_name().c_str());
      return 0;
    }
    const std::vector<int32_t> ids = glvq::encode_prompt(tok, prompt, model.config().max_positions);
    glvq::Decoder dec(model, dopt);
    const glvq::GenerateResult r = glvq::generate(dec, tok, ids, go, [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    if (r.capped)
      std::fprintf(stderr, "glvq-generate: warning: --max-new-tokens cut to %zu to fit the context of %d tokens\n",
                   r.tokens.size(), model.config().max_positions);
    const double pre = r.prefill_s > 0 ? double(r.prompt.size()) / r.prefill_s : 0;
    const double dec_tps = r.decode_s > 0 ? double(r.decode_steps) / r.decode_s : 0;
    std::printf("\nglvq-generate: prompt %zu tokens, generated %zu tokens, prefill %.1f tok/s, decode %.1f tok/s "
                "(%s; %s)\n", r.prompt.size(), r.tokens.size(), pre, dec_tps, dec.device_name().c_str(),
                dec.linear_kinds().c_str());
    return 0;
  });
}
