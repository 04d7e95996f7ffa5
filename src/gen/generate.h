#pragma once
/// Text generation and perplexity on a Decoder: sampling (greedy by default,
/// temperature and nucleus/top-p with a seed), streaming of the decoded text,
/// and the timings of glvq-generate's summary line.
#include "gen/decoder.h"
#include "text/tokenizer.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace glvq {

struct SamplerOptions {
  double temperature = 0;  ///< 0: greedy (argmax, the lowest id among ties)
  double top_p = 1.0;      ///< keep the most probable tokens whose mass reaches top_p (0 < top_p <= 1)
  uint64_t seed = 0;
};

/// Draws token ids from logits; the same seed gives the same draws on every platform.
class Sampler {
 public:
  explicit Sampler(const SamplerOptions& opt);
  /// LOGITS: fp32 [vocab] on any device.
  int32_t sample(const at::Tensor& logits);
  /// The probabilities sample() draws from (CPU double [vocab]; zeros outside the nucleus).
  at::Tensor distribution(const at::Tensor& logits) const;

 private:
  SamplerOptions opt_;
  uint64_t state_;
};

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplerOptions sampler;
  bool stop_at_eos = true;
};

struct GenerateResult {
  std::vector<int32_t> prompt;  ///< BOS + the prompt's ids
  std::vector<int32_t> tokens;  ///< generated ids (the EOS that stopped it included)
  std::string text;             ///< decode(prompt + tokens) minus decode(prompt): what was streamed
  double prefill_s = 0;         ///< forward of the prompt up to the first token's logits
  double decode_s = 0;          ///< the forwards of tokens 1..n-1 (one each), sampling included
  int64_t decode_steps = 0;     ///< tokens.size() - 1 (0 when nothing was generated)
  bool capped = false;          ///< max_new_tokens was cut to fit the context
};

/// BOS + encode(PROMPT); throws UsageError for an empty prompt or one that
/// leaves no room in the model's context (CONTEXT tokens).
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& prompt, int64_t context);

/// Generates from PROMPT_IDS on DEC (reset to batch 1), calling EMIT with each
/// new piece of text as soon as it is complete UTF-8 (EMIT may be empty).
GenerateResult generate(Decoder& dec, const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                        const GenerateOptions& opt, const std::function<void(const std::string&)>& emit);

struct PerplexityResult {
  double ppl = 0, nll = 0;
  int64_t chunks = 0, ctx = 0, predicted = 0;
};

/// Perplexity of CHUNKS [n, ctx] (int64, make_eval_chunks) through DEC's
/// forward: the mean NLL of tokens 1..ctx-1 of every chunk, exponentiated
/// (the protocol of validate).
PerplexityResult gen_perplexity(Decoder& dec, const at::Tensor& chunks);

}  // namespace glvq
