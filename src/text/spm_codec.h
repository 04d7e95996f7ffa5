#pragma once
/// The steps of sentencepiece's encode and decode for a BPE model with the identity
/// normalizer (Llama's tokenizer.model), written after sentencepiece v0.1.97:
/// normalizer.cc, bpe_model.cc and SentencePieceProcessor::{Encode,Decode}.
/// Ids and text match libsentencepiece exactly (tests/base/test_tokenizer.cpp).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/spm_model.h"

namespace glvq {

/// Normalizer::Normalize without a charsmap: malformed UTF-8 bytes become U+FFFD, then
/// optional whitespace folding, the dummy prefix and ' ' -> U+2581 ("▁").
std::string spm_normalize(const SpmModel& model, std::string_view text);

/// BPE segmentation of NORMALIZED (output of spm_normalize) into ids, without BOS/EOS:
/// merges by score with a lazy priority queue, resegments UNUSED pieces, then maps
/// unknown symbols to <0xXX> byte pieces (byte_fallback) or one unk id per run.
std::vector<int32_t> bpe_encode(const SpmModel& model, std::string_view normalized);

/// Text of IDS: control pieces vanish, byte pieces are joined into UTF-8 (U+FFFD per
/// malformed byte), "▁" -> ' ', and the leading space of the dummy prefix is dropped.
/// Throws glvq::Error for an id outside [0, pieces.size()).
std::string spm_decode(const SpmModel& model, const std::vector<int32_t>& ids);

/// Length of the well-formed UTF-8 character at the start of S (1..4), or 0 when the
/// bytes are malformed (overlong, surrogate, > U+10FFFF, truncated). S must not be empty.
size_t spm_utf8_char_len(std::string_view s);

}  // namespace glvq
