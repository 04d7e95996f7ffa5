// Fine-tuning (src/finetune): the differentiable decode of a quantized layer
// against the format's own dequantize (GLVQ box and shaped, with and without
// companding and incoherence, narrow last groups; RTN; GPTQ), its gradients
// against central finite differences in fp64, and block fine-tuning: never worse
// on the held-out sequences (recomputed here from the stored layers), better on
// a synthetic block and on a real tiny-llama block.
#include "finetune/block_finetune.h"
#include "finetune/tunable_linear.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "quant/glvq.h"
#include "quant/quantizer.h"
#include "quant/rtn.h"
#include "stats/hessian.h"
#include "text/tokenizer.h"
#include "base/test_util.h"

#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

using namespace glvq;

namespace {

constexpr uint64_t kSeed = 20231;

at::Tensor random_weight(int64_t out, int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({out, in}) / std::sqrt(double(in));
}

/// A second moment with correlated inputs, so that the quantizers' metrics matter.
at::Tensor random_hessian(int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  const at::Tensor X = at::randn({4 * in, in}) + 0.3 * at::randn({4 * in, 1});
  return at::matmul(X.t(), X) / double(4 * in);
}

struct Case {
  std::string name;
  QuantizedLinear q;
};

QuantizedLinear glvq_layer(int64_t out, int64_t in, const std::string& code, bool companding, bool incoherence,
                           uint64_t seed) {
  GlvqOptions o;
  o.cfg.code = code;
  o.cfg.dim = 8;
  o.cfg.group_size = 32;
  o.cfg.iters = 5;
  o.cfg.lloyd_iters = 1;
  o.cfg.candidates = 1;
  o.cfg.companding = companding;
  o.cfg.incoherence = incoherence;
  o.bits = 2;
  o.seed = seed;
  return glvq_quantize_layer(random_weight(out, in, seed), random_hessian(in, seed + 1), "layer", o);
}

QuantizedLinear grid_layer(const std::string& method, int64_t out, int64_t in, uint64_t seed) {
  QuantConfig qc;
  qc.method = method;
  qc.bits = 2;
  qc.rtn.group_size = 32;
  qc.gptq.group_size = 32;
  return make_quantizer(qc, seed)->quantize(random_weight(out, in, seed), random_hessian(in, seed + 1), "layer");
}

/// Every kind of layer the fine-tuning knows; in = 100 leaves a last group of 4
/// columns, half a vector of d = 8 (the padded vector).
std::vector<Case> all_cases() {
  std::vector<Case> c;
  c.push_back({"glvq box", glvq_layer(24, 96, "box", false, false, kSeed)});
  c.push_back({"glvq box narrow incoherent", glvq_layer(24, 100, "box", false, true, kSeed + 10)});
  c.push_back({"glvq box companding narrow", glvq_layer(20, 100, "box", true, true, kSeed + 20)});
  c.push_back({"glvq shaped incoherent", glvq_layer(16, 64, "shaped", false, true, kSeed + 30)});
  c.push_back({"glvq shaped narrow", glvq_layer(16, 100, "shaped", false, false, kSeed + 40)});
  c.push_back({"rtn narrow", grid_layer("rtn", 12, 100, kSeed + 50)});
  c.push_back({"rtn", grid_layer("rtn", 12, 64, kSeed + 55)});
  c.push_back({"gptq narrow", grid_layer("gptq", 12, 100, kSeed + 60)});
  return c;
}

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

}  // namespace

TEST(FinetuneTunable, WeightEqualsTheStoredLayersDequantize) {
  bool saw_companding = false;
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.name);
    const at::Tensor ref = dequantize(c.q);
    const TunableLinear t(c.q, at::kCPU);
    const at::Tensor W = t.weight().detach();
    ASSERT_EQ(W.sizes(), ref.sizes());
    // Same arithmetic up to the order of the float sums (G t, the transform).
    EXPECT_LE(max_abs(W - ref), 2e-6 * max_abs(ref)) << c.name;
    if (c.q.method == "glvq") saw_companding |= max_abs(c.q.arrays.at("mu").to(at::kFloat)) > 0;
  }
  EXPECT_TRUE(saw_companding) << "no case exercised mu > 0";
}

TEST(FinetuneTunable, StoredWithoutChangeIsTheInputBitForBit) {
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.name);
    const QuantizedLinear s = TunableLinear(c.q, at::kCPU).stored();
    ASSERT_EQ(s.arrays.size(), c.q.arrays.size());
    for (const auto& [k, v] : c.q.arrays) {
      ASSERT_TRUE(s.arrays.count(k)) << k;
      EXPECT_EQ(s.arrays.at(k).scalar_type(), v.scalar_type()) << k;
      EXPECT_TRUE(at::equal(s.arrays.at(k), v)) << k;
    }
    EXPECT_EQ(s.attrs, c.q.attrs);
  }
}

TEST(FinetuneTunable, StoredCarriesTheTunedValues) {
  // Moving the leaves changes what is stored, and the stored layer decodes to the moved weight
  // (up to fp16 rounding of G and the scale).
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.name);
    TunableLinear t(c.q, at::kCPU);
    {
      c10::NoGradGuard ng;
      at::manual_seed(kSeed);
      for (const auto& p : t.params()) p.add_(0.05 * at::randn_like(p));
    }
    const at::Tensor W = t.weight().detach();
    const at::Tensor back = dequantize(t.stored());
    EXPECT_GT(max_abs(back - dequantize(c.q)), 1e-2 * max_abs(W));
    EXPECT_LE(max_abs(back - W), 5e-3 * max_abs(W));
  }
}

TEST(FinetuneTunable, GradientsMatchFiniteDifferencesInDouble) {
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.name);
    TunableLinear t(c.q, at::kCPU, at::kDouble);
    at::manual_seed(kSeed + 1);
    const at::Tensor R = at::randn({c.q.out, c.q.in}, at::TensorOptions().dtype(at::kDouble));
    auto f = [&]() { return (t.weight() * R).sum(); };
    f().backward();
    for (size_t p = 0; p < t.params().size(); ++p) {
      at::Tensor leaf = t.params()[p];
      // A leaf the weight does not depend on (mu without companding) gets no gradient: FD must be 0.
      const at::Tensor g = leaf.grad().defined() ? leaf.grad().clone().reshape({-1}) : at::zeros({leaf.numel()}, leaf.options());
      at::Tensor flat = leaf.detach().view({-1});
      const int64_t n = flat.numel();
      const double gmax = max_abs(g);
      for (int64_t k = 0; k < std::min<int64_t>(n, 6); ++k) {
        const int64_t i = (k * 7919 + 3) % n;
        const double x0 = flat[i].item<double>(), h = 1e-6;
        double fp, fm;
        {
          c10::NoGradGuard ng;
          flat[i] = x0 + h;
          fp = f().item<double>();
          flat[i] = x0 - h;
          fm = f().item<double>();
          flat[i] = x0;
        }
        const double fd = (fp - fm) / (2 * h);
        EXPECT_NEAR(g[i].item<double>(), fd, 1e-6 * (1 + gmax)) << "param " << p << " index " << i;
      }
    }
  }
}

namespace {

LlamaConfig small_config() {
  LlamaConfig c;
  c.hidden = 32;
  c.intermediate = 64;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 16;
  c.rms_eps = 1e-5;
  return c;
}

BlockWeights random_block(const LlamaConfig& c, uint64_t seed) {
  BlockWeights w;
  at::manual_seed(seed);
  w.input_norm = 1 + 0.1 * at::randn({c.hidden});
  w.post_norm = 1 + 0.1 * at::randn({c.hidden});
  for (int l = 0; l < kNumLinears; ++l) {
    const auto s = linear_weight_shape(c, static_cast<Linear>(l));
    w.w[l] = at::randn({s[0], s[1]}) / std::sqrt(double(s[1]));
  }
  return w;
}

/// The block-output error over the sequences IDX (flattened input order), computed here
/// independently of finetune_block: mean over tokens of ||fp(x) - q(x)||^2 in double.
/// With DENSE, linears [DONE, 7) are those dense weights instead of LAYERS'.
double heldout_error(const BlockWeights& fp, const std::array<QuantizedLinear, kNumLinears>& layers,
                     const LlamaConfig& c, const Rope& rope, const std::vector<at::Tensor>& inputs,
                     const std::vector<int64_t>& idx, const std::array<at::Tensor, kNumLinears>* dense = nullptr,
                     int done = kNumLinears) {
  c10::NoGradGuard ng;
  BlockWeights q = fp;
  for (int l = 0; l < kNumLinears; ++l) q.w[l] = l < done ? dequantize(layers[l]) : (*dense)[l];
  const at::Tensor x = at::cat(inputs);
  const at::Tensor sel = x.index_select(0, at::tensor(idx, at::TensorOptions().dtype(at::kLong)));
  const at::Tensor d = (block_forward(fp, c, rope, sel) - block_forward(q, c, rope, sel)).to(at::kDouble);
  return d.square().sum().item<double>() / double(sel.size(0) * sel.size(1));
}

std::array<QuantizedLinear, kNumLinears> quantize_block_rtn(const BlockWeights& w) {
  std::array<QuantizedLinear, kNumLinears> q;
  for (int l = 0; l < kNumLinears; ++l) q[l] = rtn_quantize_weight(w.w[l], 2, 16);
  return q;
}

bool same_arrays(const QuantizedLinear& a, const QuantizedLinear& b) {
  if (a.arrays.size() != b.arrays.size()) return false;
  for (const auto& [k, v] : a.arrays)
    if (!b.arrays.count(k) || !at::equal(v, b.arrays.at(k))) return false;
  return true;
}

}  // namespace

TEST(FinetuneBlock, HeldOutSplitIsSeededAndBounded) {
  BlockFinetuneOptions o;
  o.heldout = 0.25;
  o.seed = 7;
  const auto a = finetune_heldout_sequences(10, o);
  EXPECT_EQ(a.size(), 3u);  // ceil(2.5)
  EXPECT_EQ(a, finetune_heldout_sequences(10, o));
  for (size_t i = 1; i < a.size(); ++i) EXPECT_LT(a[i - 1], a[i]);
  EXPECT_EQ(finetune_heldout_sequences(2, o).size(), 1u);
  o.heldout = 0.99;
  EXPECT_EQ(finetune_heldout_sequences(4, o).size(), 3u);  // one is always left to train on
}

TEST(FinetuneBlock, LowersTheHeldOutErrorOfASyntheticBlock) {
  const LlamaConfig c = small_config();
  const Rope rope = make_rope(c, 16, at::kCPU);
  const BlockWeights fp = random_block(c, kSeed);
  at::manual_seed(kSeed + 2);
  const std::vector<at::Tensor> inputs = {at::randn({3, 16, c.hidden}), at::randn({3, 16, c.hidden})};
  auto layers = quantize_block_rtn(fp);
  const auto original = layers;
  BlockFinetuneOptions o;
  o.steps = 40;
  o.lr = 1e-2;
  o.batch = 2;
  o.heldout = 0.34;
  o.eval_every = 5;
  o.patience = 100;
  o.seed = kSeed;
  const BlockFinetuneResult r = finetune_block(fp, c, rope, inputs, layers, at::kCPU, o, "synthetic");
  const auto held = finetune_heldout_sequences(6, o);
  ASSERT_EQ(held.size(), 3u);
  EXPECT_EQ(r.heldout_seqs, 3);
  EXPECT_EQ(r.train_seqs, 3);
  const double before = heldout_error(fp, original, c, rope, inputs, held);
  const double after = heldout_error(fp, layers, c, rope, inputs, held);
  EXPECT_NEAR(r.heldout_before, before, 1e-5 * before);
  EXPECT_NEAR(r.heldout_after, after, 1e-5 * before);
  EXPECT_TRUE(r.kept);
  EXPECT_LT(after, 0.9 * before);
  // The best iterate is kept, not the last: here the held-out error turns up again before the end.
  ASSERT_EQ(r.heldout_history.size(), 8u);
  const double best = *std::min_element(r.heldout_history.begin(), r.heldout_history.end());
  EXPECT_LT(best, r.heldout_history.back());
  EXPECT_NEAR(after, best, 1e-3 * best);  // up to the fp16 rounding of what is stored
  for (int l = 0; l < kNumLinears; ++l) EXPECT_FALSE(same_arrays(layers[l], original[l])) << l;
}

TEST(FinetuneBlock, PartialTuningMovesTheUnquantizedWeights) {
  // q, k, v quantized (RTN 2 bits), o, gate, up, down still FP: the FP weights are tuned too,
  // the quantized layers' FP weights are left alone, and the result is the best held-out iterate.
  const LlamaConfig c = small_config();
  const Rope rope = make_rope(c, 32, at::kCPU);
  const BlockWeights fp = random_block(c, kSeed + 8);
  at::manual_seed(kSeed + 9);
  // enough tokens for the FP linears' ~8k weights not to overfit at once
  const std::vector<at::Tensor> inputs = {at::randn({12, 32, c.hidden}), at::randn({12, 32, c.hidden})};
  const int done = 3;
  const auto original = quantize_block_rtn(fp);
  BlockFinetuneOptions o;
  o.steps = 30;
  o.lr = 1e-2;
  o.batch = 4;
  o.heldout = 0.25;
  o.eval_every = 5;
  o.patience = 100;
  o.seed = kSeed;
  const auto held = finetune_heldout_sequences(24, o);
  auto layers = original;
  std::array<at::Tensor, kNumLinears> W = fp.w;
  const BlockFinetuneResult r = finetune_partial_block(fp, c, rope, inputs, layers, done, W, at::kCPU, o, "partial");
  const double before = heldout_error(fp, original, c, rope, inputs, held, &fp.w, done);
  const double after = heldout_error(fp, layers, c, rope, inputs, held, &W, done);
  EXPECT_NEAR(r.heldout_before, before, 1e-5 * before);
  EXPECT_NEAR(r.heldout_after, after, 1e-5 * before);
  EXPECT_TRUE(r.kept);
  for (int l = 0; l < done; ++l) {
    EXPECT_TRUE(at::equal(W[l], fp.w[l])) << "quantized linear " << l << ": W is not the tuning's to change";
    EXPECT_FALSE(same_arrays(layers[l], original[l])) << l;
  }
  for (int l = done; l < kNumLinears; ++l) {
    EXPECT_FALSE(at::equal(W[l], fp.w[l])) << "linear " << l << " was not tuned";
    EXPECT_EQ(W[l].sizes(), fp.w[l].sizes());
  }
  // The same run with the FP linears frozen (tune_block on q, k, v's leaves alone).
  std::vector<TunableLinear> tl;
  for (int l = 0; l < done; ++l) tl.emplace_back(original[l], at::kCPU);
  BlockTuning T;
  for (const auto& t : tl)
    for (const auto& p : t.params()) T.leaves.push_back(p);
  T.weights = [&]() {
    std::array<at::Tensor, kNumLinears> w = fp.w;
    for (int l = 0; l < done; ++l) w[l] = tl[l].weight();
    return w;
  };
  T.stored = [&]() {
    std::array<at::Tensor, kNumLinears> w = fp.w;
    for (int l = 0; l < done; ++l) w[l] = dequantize(tl[l].stored());
    return w;
  };
  const BlockFinetuneResult frozen = tune_block(fp, c, rope, inputs, T, at::kCPU, o, "frozen");
  EXPECT_NEAR(frozen.heldout_before, before, 1e-5 * before);
  // The FP linears' weights are many more parameters: the training error falls much further
  // (on the held-out sequences they overfit this little data about as fast as they gain: 2.003
  // against 1.979 with them frozen, which is why a phase keeps its best held-out iterate only).
  EXPECT_LT(r.train_after, 0.8 * frozen.train_after) << "frozen " << frozen.train_after << ", tuned " << r.train_after;
}

TEST(FinetuneBlock, NeverWorseOnTheHeldOutSet) {
  // A learning rate far too large: every iterate is worse than the start, so the block keeps
  // its layers exactly as they were.
  const LlamaConfig c = small_config();
  const Rope rope = make_rope(c, 16, at::kCPU);
  const BlockWeights fp = random_block(c, kSeed + 5);
  at::manual_seed(kSeed + 6);
  const std::vector<at::Tensor> inputs = {at::randn({4, 16, c.hidden})};
  auto layers = quantize_block_rtn(fp);
  const auto original = layers;
  BlockFinetuneOptions o;
  o.steps = 6;
  o.lr = 30;
  o.batch = 1;
  o.heldout = 0.5;
  o.eval_every = 2;
  o.seed = kSeed;
  const BlockFinetuneResult r = finetune_block(fp, c, rope, inputs, layers, at::kCPU, o, "diverging");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.best_step, 0);
  for (int l = 0; l < kNumLinears; ++l) EXPECT_TRUE(same_arrays(layers[l], original[l])) << l;
  const auto held = finetune_heldout_sequences(4, o);
  const double before = heldout_error(fp, original, c, rope, inputs, held);
  EXPECT_NEAR(r.heldout_after, before, 1e-5 * before);
  EXPECT_EQ(r.heldout_after, r.heldout_before);
}

TEST(FinetuneBlock, LowersTheErrorOfARealTinyLlamaBlock) {
  // Block 1 of tiny-llama on 8 sequences of 128 calibration tokens (embedded, then through
  // the FP block 0), its linears GLVQ box 2 bits with few learning steps.
  const std::string dir = glvq::test::source_dir() + "/models/tiny-llama";
  ModelFiles files(dir);
  const LlamaConfig c = load_llama_config(dir);
  const int64_t T = 128, n = 8;
  const Rope rope = make_rope(c, T, at::kCPU);
  std::ifstream in(glvq::test::source_dir() + "/data/calib.txt");
  std::stringstream text;
  text << in.rdbuf();
  const Tokenizer tok(dir + "/tokenizer.model");
  std::vector<int32_t> ids = tok.encode(text.str().substr(0, 60000));
  ASSERT_GE(int64_t(ids.size()), n * T);
  ids.resize(size_t(n * T));
  std::vector<at::Tensor> inputs;
  BlockWeights fp;
  {
    c10::NoGradGuard ng;
    const HeadWeights head = load_head(files, c, /*first=*/true, /*last=*/false, at::kCPU);
    const at::Tensor tokens = at::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({n, T});
    const at::Tensor x = block_forward(load_block(files, c, 0, at::kCPU), c, rope, head.embed.index_select(0, tokens.view({-1})).view({n, T, c.hidden}));
    inputs = {x.narrow(0, 0, 4).contiguous(), x.narrow(0, 4, 4).contiguous()};
    fp = load_block(files, c, 1, at::kCPU);
  }
  std::array<HessianAccumulator, kNumTaps> acc;
  {
    c10::NoGradGuard ng;
    TapFn tap = [&](Tap t, const at::Tensor& x) { acc[static_cast<int>(t)].add(x); };
    for (const auto& x : inputs) block_forward(fp, c, rope, x, &tap);
  }
  QuantConfig qc;
  qc.method = "glvq";
  qc.bits = 2;
  qc.glvq.code = "box";
  qc.glvq.iters = 20;
  auto quant = make_quantizer(qc, kSeed);
  std::array<QuantizedLinear, kNumLinears> layers;
  for (int l = 0; l < kNumLinears; ++l)
    layers[l] = quant->quantize(fp.w[l], acc[static_cast<int>(tap_of(static_cast<Linear>(l)))].mean(), "l");
  const auto original = layers;
  BlockFinetuneOptions o;
  o.steps = 30;
  o.lr = 1e-3;
  o.batch = 2;
  o.heldout = 0.25;
  o.eval_every = 10;
  o.seed = kSeed;
  const BlockFinetuneResult r = finetune_block(fp, c, rope, inputs, layers, at::kCPU, o, "tiny-llama block 1");
  const auto held = finetune_heldout_sequences(n, o);
  const double before = heldout_error(fp, original, c, rope, inputs, held);
  const double after = heldout_error(fp, layers, c, rope, inputs, held);
  EXPECT_NEAR(r.heldout_after, after, 1e-4 * before);
  EXPECT_TRUE(r.kept);
  // 30 steps gain 4.3 % (2 threads) to 5.2 % (1 thread): the block's quantization, and so the
  // starting error, depends on the BLAS thread count; 3 % stays a real gain on either.
  EXPECT_LT(after, 0.97 * before) << "held-out block error " << before << " -> " << after;
}
