#include "gen/gen_forward.h"

#include "common/error.h"

#include <cmath>
#include <limits>

namespace glvq {

int64_t GenWeights::step_weight_bytes() const {
  int64_t b = 0;
  for (const GenBlock& blk : blocks) {
    for (const auto& l : blk.lin) b += l->weight_bytes();
    b += 2 * cfg.hidden * 4;
  }
  return b + lm_head.numel() * static_cast<int64_t>(lm_head.element_size()) + cfg.hidden * 4 +
         cfg.hidden * static_cast<int64_t>(embed.element_size());
}

void KvCache::reset(const GenWeights& w, int64_t b, int64_t len) {
  batch = b;
  max_len = len;
  k.clear();
  v.clear();
  const auto opts = at::TensorOptions().dtype(w.act).device(w.device);
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    // Zeros, not empty: masked slots still enter the attention products (exp(-inf) * 0).
    k.push_back(at::zeros({b, w.cfg.n_kv_heads, len, w.cfg.head_dim}, opts));
    v.push_back(at::zeros({b, w.cfg.n_kv_heads, len, w.cfg.head_dim}, opts));
  }
}

int64_t KvCache::read_bytes(const GenWeights& w, int64_t len) const {
  return 2 * int64_t(w.blocks.size()) * batch * w.cfg.n_kv_heads * len * w.cfg.head_dim *
         static_cast<int64_t>(at::elementSize(w.act));
}

namespace {

/// x [B, heads, n, hd] (fp32) rotated by positions QPOS: cos/sin rows gathered per token.
at::Tensor rope_at(const at::Tensor& x, const Rope& rope, const at::Tensor& qpos) {
  const int64_t half = x.size(3) / 2;
  const at::Tensor cos = rope.cos.index_select(0, qpos), sin = rope.sin.index_select(0, qpos);  // [n, hd]
  const at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return x * cos + at::cat({-x2, x1}, -1) * sin;
}

at::Tensor norm_to(const at::Tensor& x, const at::Tensor& w, double eps, at::ScalarType act) {
  return rms_norm(x, w, eps).to(act);
}

}  // namespace

at::Tensor gen_forward(const GenWeights& w, KvCache& cache, const at::Tensor& tokens, const at::Tensor& qpos,
                       int64_t kv_len, bool all_logits) {
  const LlamaConfig& c = w.cfg;
  const int64_t B = tokens.size(0), n = tokens.size(1), hd = c.head_dim, H = c.n_heads, KV = c.n_kv_heads;
  const int64_t rep = H / KV;
  GLVQ_ASSERT(B == cache.batch && kv_len <= cache.max_len && qpos.numel() == n);
  at::Tensor x = w.embed.index_select(0, tokens.reshape({-1})).to(at::kFloat).view({B, n, c.hidden});
  // key j is hidden from query i when j > qpos[i]: [n, kv_len], broadcast over batch and heads
  const at::Tensor keys = at::arange(kv_len, qpos.options());
  const at::Tensor hide = keys.unsqueeze(0) > qpos.unsqueeze(1);
  const double inv_sqrt = 1.0 / std::sqrt(double(hd));
  for (size_t bi = 0; bi < w.blocks.size(); ++bi) {
    const GenBlock& blk = w.blocks[bi];
    const at::Tensor h = norm_to(x, blk.input_norm, c.rms_eps, w.act).view({B * n, c.hidden});
    at::Tensor q = blk.lin[int(Linear::Q)]->forward(h).to(at::kFloat).view({B, n, H, hd}).transpose(1, 2);
    at::Tensor k = blk.lin[int(Linear::K)]->forward(h).to(at::kFloat).view({B, n, KV, hd}).transpose(1, 2);
    const at::Tensor v = blk.lin[int(Linear::V)]->forward(h).view({B, n, KV, hd}).transpose(1, 2);
    q = rope_at(q, w.rope, qpos);
    k = rope_at(k, w.rope, qpos);
    cache.k[bi].index_copy_(2, qpos, k.to(w.act));
    cache.v[bi].index_copy_(2, qpos, v.to(w.act));
    const at::Tensor K = cache.k[bi].narrow(2, 0, kv_len), V = cache.v[bi].narrow(2, 0, kv_len);
    // the rep query heads of a KV group share its keys: fold them into the rows
    const at::Tensor qg = q.reshape({B, KV, rep * n, hd}).to(w.act);
    at::Tensor s = at::matmul(qg, K.transpose(-1, -2)).to(at::kFloat).mul_(inv_sqrt).view({B, KV, rep, n, kv_len});
    s.masked_fill_(hide, -std::numeric_limits<float>::infinity());
    const at::Tensor p = at::softmax(s, -1).view({B, KV, rep * n, kv_len}).to(w.act);
    const at::Tensor a = at::matmul(p, V).view({B, H, n, hd}).transpose(1, 2).reshape({B * n, H * hd});
    x = x + blk.lin[int(Linear::O)]->forward(a.contiguous()).to(at::kFloat).view({B, n, c.hidden});
    const at::Tensor m = norm_to(x, blk.post_norm, c.rms_eps, w.act).view({B * n, c.hidden});
    const at::Tensor g = blk.lin[int(Linear::Gate)]->forward(m).to(at::kFloat);
    const at::Tensor u = blk.lin[int(Linear::Up)]->forward(m).to(at::kFloat);
    const at::Tensor act = (at::silu(g) * u).to(w.act);
    x = x + blk.lin[int(Linear::Down)]->forward(act).to(at::kFloat).view({B, n, c.hidden});
  }
  if (!all_logits) x = x.select(1, n - 1);
  return at::linear(norm_to(x, w.norm, c.rms_eps, w.act), w.lm_head).to(at::kFloat);
}

}  // namespace glvq
