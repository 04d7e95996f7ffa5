#include "common/error.h"
#include "text/spm_codec.h"

namespace glvq {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

/// Appends a run of byte-piece values: each well-formed UTF-8 character as is, each
/// malformed byte as U+FFFD (SentencePieceProcessor::Decode's ProcessBytePieces).
void append_bytes(const std::string& bytes, std::string* text) {
  for (size_t off = 0; off < bytes.size();) {
    const std::string_view rest = std::string_view(bytes).substr(off);
    const size_t len = spm_utf8_char_len(rest);
    if (len == 0) {
      *text += kReplacementChar;
      off += 1;
    } else {
      text->append(rest.substr(0, len));
      off += len;
    }
  }
}

void append_replacing_spaces(std::string_view piece, std::string* text) {
  for (size_t pos = 0;;) {
    const size_t hit = piece.find(kSpaceSymbol, pos);
    if (hit == std::string_view::npos) {
      text->append(piece.substr(pos));
      return;
    }
    text->append(piece.substr(pos, hit - pos));
    *text += ' ';
    pos = hit + kSpaceSymbol.size();
  }
}

}  // namespace

std::string spm_decode(const SpmModel& m, const std::vector<int32_t>& ids) {
  const auto n_pieces = static_cast<int64_t>(m.pieces.size());
  for (int32_t id : ids)
    GLVQ_CHECK(id >= 0 && id < n_pieces, "cannot decode token id {}: the tokenizer has ids 0..{}", id, n_pieces - 1);

  std::string text, bytes;
  // The dummy prefix: the first piece that produces text loses one leading "▁".
  const bool strip_bos_ws = m.add_dummy_prefix || m.remove_extra_whitespaces;
  bool is_bos_ws = true, bos_ws_seen = false;
  for (int32_t given : ids) {
    const std::string& piece = m.pieces[static_cast<size_t>(given)].piece;
    const int32_t id = m.piece_to_id(piece);  // sentencepiece decodes ids via their pieces
    const SpmPieceType type = m.type(id);
    if (type == SpmPieceType::kByte) {
      bytes += static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16));  // "<0xXX>", checked at load
      continue;
    }
    append_bytes(bytes, &text);
    bytes.clear();
    if (bos_ws_seen || !text.empty()) is_bos_ws = false;
    bos_ws_seen = false;
    if (type == SpmPieceType::kControl) continue;
    if (type == SpmPieceType::kUnknown) {
      text += piece == m.pieces[static_cast<size_t>(id)].piece ? std::string_view(m.unk_surface)
                                                               : std::string_view(piece);
      continue;
    }
    std::string_view p = piece;
    if (is_bos_ws && strip_bos_ws && p.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
      p.remove_prefix(kSpaceSymbol.size());
      bos_ws_seen = !m.remove_extra_whitespaces;  // with folding, every leading "▁" goes
    }
    append_replacing_spaces(p, &text);
  }
  append_bytes(bytes, &text);
  return text;
}

}  // namespace glvq
