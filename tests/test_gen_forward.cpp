// glvq-generate's forward (src/gen, CPU path) against the LibTorch forward of
// src/nn/llama (block_forward: full recompute, no cache) on the same dequantized
// weights of an RTN-quantized tiny-llama, and its perplexity against validate's
// computation (block_forward + nll_sum). Also: sampling, and the model checks.
#include "ckpt/checkpoint.h"
#include "common/fs_util.h"
#include "eval/corpus.h"
#include "gen/decoder.h"
#include "gen/gen_model.h"
#include "gen/generate.h"
#include "gen/synth_checkpoint.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "quant/quantizer.h"
#include "base/test_util.h"

#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

using namespace glvq;
using glvq::test::TempDir;

namespace {

const std::string kModel = glvq::test::source_dir() + "/models/tiny-llama";

/// tiny-llama with every linear RTN-quantized (4 bits, group 128), written as a checkpoint.
struct Fixture {
  TempDir dir;
  std::string ckpt;
  LlamaConfig cfg;
  std::vector<BlockWeights> ref_blocks;  // norms + dequantize() of the stored layers
  HeadWeights head;

  Fixture() {
    c10::NoGradGuard ng;
    ModelFiles files(kModel);
    cfg = load_llama_config(kModel);
    QuantConfig qc;
    qc.method = "rtn";
    qc.bits = 4;
    auto quant = make_quantizer(qc, 0);
    ckpt = dir.file("model.glvq.h5");
    CheckpointWriter w(ckpt);
    for (int b = 0; b < cfg.n_layers; ++b) {
      BlockWeights bw = load_block(files, cfg, b, at::kCPU);
      for (int l = 0; l < kNumLinears; ++l) {
        const at::Tensor W = bw.w[l];
        const at::Tensor H = at::eye(W.size(1));
        w.add_layer(linear_tensor_name(b, static_cast<Linear>(l)),
                    quant->quantize(W, H, linear_tensor_name(b, static_cast<Linear>(l))));
      }
    }
    for (const std::string& n : unquantized_tensor_names(cfg, files)) w.add_tensor(files.get(n));
    CheckpointInfo info;
    info.model_config = cfg.raw.dump(2);
    info.config = nlohmann::json{{"model", {{"path", kModel}}}}.dump();
    info.method = "rtn";
    w.finish(info);

    CheckpointReader r(ckpt);
    for (int b = 0; b < cfg.n_layers; ++b) {
      BlockWeights bw = load_block(files, cfg, b, at::kCPU, /*linears=*/false);
      for (int l = 0; l < kNumLinears; ++l) bw.w[l] = dequantize(r.layer(linear_tensor_name(b, static_cast<Linear>(l))));
      ref_blocks.push_back(std::move(bw));
    }
    head = load_head(files, cfg, true, true, at::kCPU);
  }

  /// Reference logits [T, vocab] of TOKENS by a full forward (no cache).
  at::Tensor ref_logits(const std::vector<int64_t>& tokens) const {
    const int64_t T = int64_t(tokens.size());
    const at::Tensor ids = at::tensor(tokens, at::TensorOptions().dtype(at::kLong));
    const Rope rope = make_rope(cfg, T, at::kCPU);
    at::Tensor x = head.embed.index_select(0, ids).unsqueeze(0);
    for (const BlockWeights& bw : ref_blocks) x = block_forward(bw, cfg, rope, x);
    return at::linear(rms_norm(x[0], head.norm, cfg.rms_eps), head.lm_head);
  }
};

Fixture& fixture() {
  static Fixture* f = new Fixture();  // built once for the whole binary (a few seconds)
  return *f;
}

/// fp16 tolerance on logits: 2^-10 of the largest reference logit (at least 1).
void expect_logits_close(const at::Tensor& got, const at::Tensor& ref, const std::string& where) {
  ASSERT_EQ(got.sizes(), ref.sizes()) << where;
  const double scale = std::max(1.0, ref.abs().max().item<double>());
  const double err = (got - ref).abs().max().item<double>();
  EXPECT_LE(err, scale / 1024) << where << ": max |logit - ref| = " << err << " (scale " << scale << ")";
}

std::vector<int64_t> prompt_ids(const Tokenizer& tok) {
  std::vector<int64_t> ids = {tok.bos_id()};
  for (int32_t t : tok.encode("Once upon a time there was a little girl who lived in a village near the forest. "
                              "Every day she"))
    ids.push_back(t);
  return ids;
}

at::Tensor row(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
}

}  // namespace

TEST(GenForward, PromptLogitsEqualFullForwardAtEveryPosition) {
  c10::NoGradGuard ng;
  Fixture& f = fixture();
  GenModel m(f.ckpt);
  Decoder dec(m, {});
  const std::vector<int64_t> ids = prompt_ids(m.tokenizer());
  ASSERT_GE(ids.size(), 20u);
  dec.reset(1, 256);
  const at::Tensor got = dec.forward(row(ids), /*all_logits=*/true);
  expect_logits_close(got[0], f.ref_logits(ids), "prompt");
  // A prompt split in two forwards (the second one attends to the cached first part).
  dec.reset(1, 256);
  const std::vector<int64_t> a(ids.begin(), ids.begin() + 7), b(ids.begin() + 7, ids.end());
  dec.forward(row(a), true);
  const at::Tensor got2 = dec.forward(row(b), true);
  expect_logits_close(got2[0], f.ref_logits(ids).narrow(0, 7, int64_t(b.size())), "prompt in two parts");
}

TEST(GenForward, SixtyFourCachedDecodeStepsEqualFullRecomputeAndGreedyAgrees) {
  c10::NoGradGuard ng;
  Fixture& f = fixture();
  GenModel m(f.ckpt);
  Decoder dec(m, {});
  std::vector<int64_t> seq = prompt_ids(m.tokenizer());
  const size_t np = seq.size();
  dec.reset(1, int64_t(np) + 64);
  at::Tensor last = dec.forward(row(seq))[0];
  for (int step = 0; step < 64; ++step) {
    const at::Tensor ref = f.ref_logits(seq);
    expect_logits_close(last, ref[-1], "decode step " + std::to_string(step));
    const int64_t want = ref[-1].argmax().item<int64_t>();
    ASSERT_EQ(last.argmax().item<int64_t>(), want) << "greedy continuations part at step " << step;
    seq.push_back(want);
    if (step < 63) last = dec.forward(row({want}))[0];
  }
  // generate() (greedy, no EOS stop) gives the same 64 tokens.
  GenerateOptions go;
  go.max_new_tokens = 64;
  go.stop_at_eos = false;
  const std::vector<int32_t> p32(seq.begin(), seq.begin() + np);
  const GenerateResult r = generate(dec, m.tokenizer(), p32, go, {});
  ASSERT_EQ(r.tokens.size(), 64u);
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(r.tokens[i], seq[np + i]) << "token " << i;
  EXPECT_EQ(r.decode_steps, 63);
  std::vector<int32_t> gen(seq.begin() + np, seq.end());
  std::vector<int32_t> all(seq.begin(), seq.end());
  EXPECT_EQ(r.text, m.tokenizer().decode(all).substr(m.tokenizer().decode(p32).size()));
}

TEST(GenForward, BatchedSequencesEqualSingleOnes) {
  c10::NoGradGuard ng;
  Fixture& f = fixture();
  GenModel m(f.ckpt);
  Decoder dec(m, {});
  std::vector<int64_t> a = prompt_ids(m.tokenizer()), b = a;
  std::reverse(b.begin() + 1, b.end());
  at::Tensor both = at::cat({row(a), row(b)}, 0);
  dec.reset(2, 128);
  const at::Tensor got = dec.forward(both, true);
  expect_logits_close(got[0], f.ref_logits(a), "sequence 0 of 2");
  expect_logits_close(got[1], f.ref_logits(b), "sequence 1 of 2");
  const at::Tensor step = dec.forward(at::tensor({int64_t(5), int64_t(9)}).view({2, 1}));
  a.push_back(5);
  b.push_back(9);
  expect_logits_close(step[0], f.ref_logits(a)[-1], "step of sequence 0");
  expect_logits_close(step[1], f.ref_logits(b)[-1], "step of sequence 1");
}

TEST(GenForward, PerplexityEqualsValidatesComputation) {
  c10::NoGradGuard ng;
  Fixture& f = fixture();
  GenModel m(f.ckpt);
  Decoder dec(m, {});
  const std::vector<int32_t> ids =
      tokenize_corpus(m.tokenizer(), read_text_file(glvq::test::source_dir() + "/data/eval.txt"));
  const at::Tensor chunks = make_eval_chunks(ids, 256, 3, "eval.txt");
  const PerplexityResult r = gen_perplexity(dec, chunks);
  // validate: block_forward over the chunks, nll_sum, exp(mean)
  const Rope rope = make_rope(f.cfg, 256, at::kCPU);
  at::Tensor x = f.head.embed.index_select(0, chunks.reshape({-1})).view({3, 256, f.cfg.hidden});
  for (const BlockWeights& bw : f.ref_blocks) x = block_forward(bw, f.cfg, rope, x);
  const double ref = std::exp(nll_sum(f.head, f.cfg, x, chunks) / (3.0 * 255));
  EXPECT_EQ(r.predicted, 3 * 255);
  EXPECT_NEAR(r.ppl, ref, 1e-4 * ref) << "gen " << r.ppl << " validate " << ref;
}

TEST(GenSampler, GreedyTemperatureAndNucleus) {
  // probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 at temperature 1
  const at::Tensor logits = at::log(at::tensor({0.0625, 0.25, 0.5, 0.125, 0.0625})).to(at::kFloat);
  Sampler greedy({});
  EXPECT_EQ(greedy.sample(logits), 2);
  // top_p 0.7: the nucleus is {2, 1} (0.75 >= 0.7), renormalised to 2/3, 1/3
  Sampler nucleus({1.0, 0.7, 7});
  const at::Tensor p = nucleus.distribution(logits);
  EXPECT_NEAR(p[2].item<double>(), 2.0 / 3, 1e-9);
  EXPECT_NEAR(p[1].item<double>(), 1.0 / 3, 1e-9);
  EXPECT_EQ(p[0].item<double>() + p[3].item<double>() + p[4].item<double>(), 0.0);
  int count[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < 6000; ++i) ++count[nucleus.sample(logits)];
  EXPECT_EQ(count[0] + count[3] + count[4], 0);
  EXPECT_NEAR(count[2] / 6000.0, 2.0 / 3, 0.03);  // ~5 standard deviations
  // temperature 2 flattens: p ~ sqrt(p1)
  Sampler hot({2.0, 1.0, 0});
  const at::Tensor q = hot.distribution(logits);
  EXPECT_NEAR(q[2].item<double>() / q[1].item<double>(), std::sqrt(2.0), 1e-6);  // fp32 logits
  // the same seed draws the same tokens
  Sampler s1({1.0, 1.0, 42}), s2({1.0, 1.0, 42});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s1.sample(logits), s2.sample(logits));
}

TEST(GenModelChecks, BadCheckpointsAndModelDirectories) {
  Fixture& f = fixture();
  TempDir dir;
  glvq::test::expect_error([&] { GenModel m(dir.file("absent.h5")); }, {"absent.h5"});
  // another model's directory: intermediate_size differs
  const std::string other = dir.file("other");
  std::filesystem::create_directories(other);
  nlohmann::json cfg = f.cfg.raw;
  cfg["intermediate_size"] = 2048;
  std::ofstream(other + "/config.json") << cfg.dump();
  std::filesystem::copy_file(kModel + "/tokenizer.model", other + "/tokenizer.model");
  GenModelOptions o;
  o.model_dir = other;
  glvq::test::expect_error([&] { GenModel m(f.ckpt, o); }, {other + "/config.json", "intermediate_size", "--model"});
  // a directory without a tokenizer
  cfg["intermediate_size"] = f.cfg.intermediate;
  std::ofstream(other + "/config.json", std::ios::trunc) << cfg.dump();
  std::filesystem::remove(other + "/tokenizer.model");
  glvq::test::expect_error([&] { GenModel m(f.ckpt, o); }, {other, "tokenizer.model"});
  o.model_dir = dir.file("gone");
  glvq::test::expect_error([&] { GenModel m(f.ckpt, o); }, {dir.file("gone"), "does not exist"});
  // a prompt too long for the context, an empty one
  GenModel m(f.ckpt);
  std::string longp;
  for (int i = 0; i < 1200; ++i) longp += "once upon a time ";
  glvq::test::expect_error([&] { encode_prompt(m.tokenizer(), longp, f.cfg.max_positions); },
                           {"longer than the model's context"});
  glvq::test::expect_error([&] { encode_prompt(m.tokenizer(), "", f.cfg.max_positions); }, {"empty"});
}

TEST(GenSynthCheckpoint, RandomCodesAtAnyShapeLoadAndRun) {
  c10::NoGradGuard ng;
  for (bool shaped : {false, true}) {
    SCOPED_TRACE(shaped ? "shaped code" : "box code");
    TempDir dir;
    SynthCheckpointOptions o;
    o.shape.hidden = 256;
    o.shape.intermediate = 384;
    o.shape.heads = 4;
    o.shape.kv_heads = 2;
    o.shape.vocab = 300;
    o.shape.blocks = 2;
    o.shape.max_positions = 64;
    o.bits = 3;
    o.shaped = shaped;
    write_synth_checkpoint(dir.file("s.h5"), o, {});
    GenModelOptions mo;
    mo.tokenizer = false;
    GenModel m(dir.file("s.h5"), mo);
    EXPECT_EQ(m.config().n_layers, 2);
    EXPECT_EQ(m.config().head_dim, 64);
    // 3 code bits + fp16 G (64 values), mu and scale per 128-weight row group + signs
    EXPECT_NEAR(m.bits_per_weight(), 3.0, 0.2);
    for (int l = 0; l < kNumLinears; ++l) {
      const QuantizedLinear q = m.layer(1, static_cast<Linear>(l));
      EXPECT_EQ(q.attrs.at("code"), shaped ? 1.0 : 0.0);
      const at::Tensor W = dequantize(q);
      const auto want = linear_weight_shape(m.config(), static_cast<Linear>(l));
      EXPECT_EQ(W.size(0), want[0]);
      EXPECT_EQ(W.size(1), want[1]);
      const double rms = W.pow(2).mean().sqrt().item<double>();
      EXPECT_NEAR(rms, 0.02, 0.004) << linear_suffix(static_cast<Linear>(l));  // the scale's purpose
    }
    Decoder dec(m, {});
    dec.reset(2, 16);
    const at::Tensor logits = dec.forward(at::randint(0, 300, {2, 16}, at::TensorOptions().dtype(at::kLong)), true);
    EXPECT_EQ(logits.sizes(), at::IntArrayRef({2, 16, 300}));
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  }
}
