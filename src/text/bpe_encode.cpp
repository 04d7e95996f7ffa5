#include <algorithm>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>

#include "text/spm_codec.h"

namespace glvq {
namespace {

struct Symbol {
  int32_t prev;  ///< -1 at the start
  int32_t next;  ///< -1 at the end
  bool freeze;   ///< a user-defined piece: never merged
  std::string_view piece;
};

struct SymbolPair {
  int32_t left, right;
  float score;
  size_t size;  ///< bytes of the merged piece: a stale entry no longer matches it
};

/// Highest score first; among equal scores the leftmost pair (bpe_model.cc's comparator).
struct PairOrder {
  bool operator()(const SymbolPair& a, const SymbolPair& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

/// Bytes of the UTF-8 character led by C (string_util::OneCharLen; no validation).
size_t one_char_len(char c) { return static_cast<size_t>("\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[static_cast<uint8_t>(c) >> 4]); }

/// bpe::Model::SampleEncode with alpha = 0: (piece, id) of each final symbol.
std::vector<std::pair<std::string_view, int32_t>> bpe_segment(const SpmModel& m, std::string_view text) {
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const std::string_view rest = text.substr(pos);
    size_t len = m.match_user_defined(rest);
    const bool freeze = len > 0;
    if (!freeze) len = std::min(rest.size(), one_char_len(rest.front()));
    const auto index = static_cast<int32_t>(symbols.size());
    pos += len;
    symbols.push_back({index - 1, pos == text.size() ? -1 : index + 1, freeze, rest.substr(0, len)});
  }

  std::priority_queue<SymbolPair, std::vector<SymbolPair>, PairOrder> agenda;
  // Merged UNUSED piece -> the two symbols it was made of, to undo that merge at the end.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;

  const auto maybe_add_pair = [&](int32_t left, int32_t right) {
    if (left == -1 || right == -1 || symbols[left].freeze || symbols[right].freeze) return;
    const std::string_view piece(symbols[left].piece.data(), symbols[left].piece.size() + symbols[right].piece.size());
    const auto it = m.normal_ids.find(piece);
    if (it == m.normal_ids.end()) return;
    agenda.push({left, right, m.pieces[static_cast<size_t>(it->second)].score, piece.size()});
    if (m.type(it->second) == SpmPieceType::kUnused) rev_merge[piece] = {symbols[left].piece, symbols[right].piece};
  };

  for (size_t i = 1; i < symbols.size(); ++i) maybe_add_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

  while (!agenda.empty()) {
    const SymbolPair top = agenda.top();
    agenda.pop();
    Symbol& l = symbols[top.left];
    Symbol& r = symbols[top.right];
    if (l.piece.empty() || r.piece.empty() || l.piece.size() + r.piece.size() != top.size) continue;  // stale
    l.piece = std::string_view(l.piece.data(), l.piece.size() + r.piece.size());
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = top.left;
    r.piece = std::string_view();
    maybe_add_pair(l.prev, top.left);
    maybe_add_pair(top.left, l.next);
  }

  std::vector<std::pair<std::string_view, int32_t>> out;
  out.reserve(symbols.size());
  std::function<void(std::string_view)> resegment = [&](std::string_view w) {
    const int32_t id = m.piece_to_id(w);
    if (id < 0 || m.type(id) != SpmPieceType::kUnused) {
      out.emplace_back(w, id);
      return;
    }
    const auto p = rev_merge.find(w);
    if (p == rev_merge.end()) {
      out.emplace_back(w, id);
      return;
    }
    resegment(p->second.first);
    resegment(p->second.second);
  };
  if (!symbols.empty()) {
    for (int32_t i = 0; i != -1; i = symbols[i].next) {
      const std::string_view w = symbols[i].piece;
      const int32_t id = m.piece_to_id(w);
      if (m.type(id) == SpmPieceType::kUnused) {
        resegment(w);
      } else {
        out.emplace_back(w, id);
      }
    }
  }
  return out;
}

}  // namespace

std::vector<int32_t> bpe_encode(const SpmModel& m, std::string_view normalized) {
  std::vector<int32_t> ids;
  if (normalized.empty()) return ids;
  const auto segments = bpe_segment(m, normalized);
  ids.reserve(segments.size());
  // SentencePieceProcessor::PopulateSentencePieceText.
  bool is_prev_unk = false;
  for (const auto& [w, id] : segments) {
    const bool is_unk = m.type(id) == SpmPieceType::kUnknown;
    if (m.type(id) == SpmPieceType::kControl) {
      ids.push_back(id);
    } else if (is_unk && m.byte_fallback) {
      for (char c : w) ids.push_back(m.byte_ids[static_cast<uint8_t>(c)]);
    } else if (!(is_prev_unk && is_unk)) {  // a run of unknown symbols is one unk id
      ids.push_back(id);
    }
    is_prev_unk = is_unk;
  }
  return ids;
}

}  // namespace glvq
