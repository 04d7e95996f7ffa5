#include "gen/generate.h"
#include "common/splitmix.h"

#include "common/error.h"
#include "common/preempt.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace glvq {
namespace {


double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Bytes at the end of S that start a UTF-8 character not yet complete, or a
/// U+FFFD that the decoder wrote for an unfinished byte sequence: held back
/// until the next token completes (or replaces) them.
size_t unstable_tail(const std::string& s) {
  size_t n = s.size(), cut = n;
  static const std::string kRepl = "\xEF\xBF\xBD";
  while (cut >= 3 && s.compare(cut - 3, 3, kRepl) == 0) cut -= 3;
  if (cut < n) return n - cut;
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back for the lead
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return len > back ? back : 0;
  }
  return 0;
}

}  // namespace

Sampler::Sampler(const SamplerOptions& opt) : opt_(opt), state_(opt.seed) {
  GLVQ_USAGE_CHECK(opt.temperature >= 0 && std::isfinite(opt.temperature), "--temperature {} must be >= 0",
                   opt.temperature);
  GLVQ_USAGE_CHECK(opt.top_p > 0 && opt.top_p <= 1, "--top-p {} must be in (0, 1]", opt.top_p);
}

at::Tensor Sampler::distribution(const at::Tensor& logits) const {
  const at::Tensor l = logits.reshape({-1}).to(at::kCPU, at::kDouble).contiguous();
  const int64_t V = l.numel();
  at::Tensor p = at::zeros({V}, at::TensorOptions().dtype(at::kDouble));
  const double* lp = l.data_ptr<double>();
  double* pp = p.data_ptr<double>();
  if (opt_.temperature == 0) {
    pp[std::max_element(lp, lp + V) - lp] = 1;  // the first maximum
    return p;
  }
  const double mx = *std::max_element(lp, lp + V);
  std::vector<double> e(static_cast<size_t>(V));
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += e[i] = std::exp((lp[i] - mx) / opt_.temperature);
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return e[a] > e[b]; });
  double kept = 0;
  for (int64_t i : order) {
    if (kept >= opt_.top_p * sum) break;
    kept += e[i];
    pp[i] = e[i];
  }
  for (int64_t i = 0; i < V; ++i) pp[i] /= kept;
  return p;
}

int32_t Sampler::sample(const at::Tensor& logits) {
  if (opt_.temperature == 0) return static_cast<int32_t>(logits.reshape({-1}).argmax().item<int64_t>());
  const at::Tensor p = distribution(logits);
  const double* pp = p.data_ptr<double>();
  const double u = double(splitmix64(state_) >> 11) * 0x1.0p-53;  // [0, 1)
  double acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < p.numel(); ++i) {
    if (pp[i] <= 0) continue;
    last = i;
    acc += pp[i];
    if (u < acc) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last);  // u within rounding of 1
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& prompt, int64_t context) {
  GLVQ_USAGE_CHECK(!prompt.empty(), "the prompt is empty: give some text with --prompt or --prompt-file");
  std::vector<int32_t> ids = {tok.bos_id()};
  const std::vector<int32_t> body = tok.encode(prompt);
  GLVQ_USAGE_CHECK(!body.empty(), "the prompt encodes to no tokens: give some text with --prompt or --prompt-file");
  ids.insert(ids.end(), body.begin(), body.end());
  GLVQ_USAGE_CHECK(int64_t(ids.size()) < context, "the prompt is {} tokens (with BOS), longer than the model's "
                   "context allows ({} tokens, one at least for the answer): shorten it", ids.size(), context);
  return ids;
}

GenerateResult generate(Decoder& dec, const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                        const GenerateOptions& opt, const std::function<void(const std::string&)>& emit) {
  GenerateResult r;
  r.prompt = prompt_ids;
  const int64_t context = dec.weights().cfg.max_positions, np = int64_t(prompt_ids.size());
  GLVQ_ASSERT(np >= 1 && np < context);
  int64_t max_new = opt.max_new_tokens;
  if (np + max_new > context) {
    max_new = context - np;
    r.capped = true;
  }
  if (max_new <= 0) return r;
  Sampler sampler(opt.sampler);
  // every generated token but the last is fed back: the cache holds np + max_new - 1
  dec.reset(1, np + max_new);
  const std::string prompt_text = tok.decode(prompt_ids);
  std::vector<int32_t> all = prompt_ids;
  size_t streamed = 0;  // bytes of r.text handed to EMIT
  auto push = [&](int32_t id, bool last) {
    r.tokens.push_back(id);
    all.push_back(id);
    const std::string text = tok.decode(all);
    // the continuation's text: what decoding the whole sequence adds to the prompt's
    r.text = text.compare(0, prompt_text.size(), prompt_text) == 0 ? text.substr(prompt_text.size()) : text;
    const size_t stable = last ? r.text.size() : r.text.size() - unstable_tail(r.text);
    if (emit && stable > streamed) {
      emit(r.text.substr(streamed, stable - streamed));
      streamed = stable;
    }
  };
  const at::Tensor prompt_t =
      at::from_blob(const_cast<int32_t*>(prompt_ids.data()), {1, np}, at::TensorOptions().dtype(at::kInt)).to(at::kLong);
  auto t0 = std::chrono::steady_clock::now();
  int32_t next = sampler.sample(dec.forward(prompt_t).select(0, 0));  // sample() waits for the logits
  r.prefill_s = seconds_since(t0);
  const bool eos_stop = opt.stop_at_eos && tok.eos_id() >= 0;
  bool done = max_new == 1 || (eos_stop && next == tok.eos_id());
  push(next, done);
  t0 = std::chrono::steady_clock::now();
  while (!done) {
    throw_if_preempted("glvq-generate (decoding; the text so far was printed)");
    const at::Tensor t = at::full({1, 1}, int64_t(next), at::TensorOptions().dtype(at::kLong));
    next = sampler.sample(dec.forward(t).select(0, 0));
    ++r.decode_steps;
    done = int64_t(r.tokens.size()) + 1 >= max_new || (eos_stop && next == tok.eos_id());
    push(next, done);
  }
  r.decode_s = seconds_since(t0);
  return r;
}

PerplexityResult gen_perplexity(Decoder& dec, const at::Tensor& chunks) {
  PerplexityResult r;
  GLVQ_CHECK(chunks.dim() == 2 && chunks.size(1) >= 2, "perplexity needs chunks [n, ctx >= 2]");
  r.chunks = chunks.size(0);
  r.ctx = chunks.size(1);
  for (int64_t i = 0; i < r.chunks; ++i) {
    throw_if_preempted("glvq-generate --perplexity (between chunks)");
    dec.reset(1, r.ctx);
    const at::Tensor c = chunks.narrow(0, i, 1).to(at::kLong);
    const at::Tensor logits = dec.forward(c, /*all_logits=*/true).select(0, 0).narrow(0, 0, r.ctx - 1);
    const at::Tensor logp = at::log_softmax(logits, -1);
    const at::Tensor target = c.select(0, 0).narrow(0, 1, r.ctx - 1).to(logits.device());
    r.nll -= logp.gather(1, target.unsqueeze(1)).to(at::kDouble).sum().item<double>();
    r.predicted += r.ctx - 1;
  }
  r.ppl = std::exp(r.nll / double(r.predicted));
  return r;
}

}  // namespace glvq
