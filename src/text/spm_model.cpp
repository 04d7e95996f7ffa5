#include "text/spm_model.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/error.h"

namespace glvq {
namespace {

/// Why the bytes are not a ModelProto; spm_model_parse adds the path.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

/// Protocol-buffer wire format over [p, end); every read checks the bounds.
class WireReader {
 public:
  WireReader(const char* begin, const char* end, const char* base) : p_(begin), end_(end), base_(base) {}
  bool done() const { return p_ == end_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) fail("truncated varint");
      const auto b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }

  /// Reads a key; returns the field number and sets *wire.
  uint32_t key(uint32_t* wire) {
    const uint64_t k = varint();
    *wire = static_cast<uint32_t>(k & 7);
    const uint64_t field = k >> 3;
    if (field == 0 || field > 0x1FFFFFFF) fail(fmt::format("invalid field number {}", field));
    if (*wire != kVarint && *wire != kFixed64 && *wire != kLen && *wire != kFixed32)
      fail(fmt::format("field {} has wire type {}, which sentencepiece models never use", field, *wire));
    return static_cast<uint32_t>(field);
  }

  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_))
      fail(fmt::format("length {} runs past the end ({} bytes left)", n, end_ - p_));
    const std::string_view s(p_, static_cast<size_t>(n));
    p_ += n;
    return s;
  }

  float fixed32_float() {
    if (end_ - p_ < 4) fail("truncated fixed32");
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(static_cast<uint8_t>(p_[i])) << (8 * i);
    p_ += 4;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }

  void skip(uint32_t wire) {
    switch (wire) {
      case kVarint: varint(); break;
      case kLen: bytes(); break;
      case kFixed64:
        if (end_ - p_ < 8) fail("truncated fixed64");
        p_ += 8;
        break;
      case kFixed32:
        if (end_ - p_ < 4) fail("truncated fixed32");
        p_ += 4;
        break;
      default: fail(fmt::format("wire type {}", wire));
    }
  }

  /// A reader over a length-delimited submessage.
  WireReader sub() {
    const std::string_view s = bytes();
    return WireReader(s.data(), s.data() + s.size(), base_);
  }

  void expect(uint32_t field, uint32_t wire, uint32_t want, const char* what) {
    if (wire != want) fail(fmt::format("{} (field {}) has wire type {}, expected {}", what, field, wire, want));
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError(fmt::format("{} at byte {}", why, p_ - base_));
  }

 private:
  const char* p_;
  const char* end_;
  const char* base_;
};

// Repeated occurrences of a field merge into the same struct, as protobuf's parser does.

void parse_piece(WireReader r, SpmModel* m) {
  SpmPiece sp;
  while (!r.done()) {
    uint32_t wire;
    const uint32_t field = r.key(&wire);
    if (field == 1) {
      r.expect(field, wire, kLen, "SentencePiece.piece");
      sp.piece = std::string(r.bytes());
    } else if (field == 2) {
      r.expect(field, wire, kFixed32, "SentencePiece.score");
      sp.score = r.fixed32_float();
    } else if (field == 3) {
      r.expect(field, wire, kVarint, "SentencePiece.type");
      const uint64_t t = r.varint();
      if (t < 1 || t > 6) r.fail(fmt::format("piece {} has unknown type {}", m->pieces.size(), t));
      sp.type = static_cast<SpmPieceType>(t);
    } else {
      r.skip(wire);
    }
  }
  m->pieces.push_back(std::move(sp));
}

void parse_trainer_spec(WireReader r, SpmModel* m) {
  while (!r.done()) {
    uint32_t wire;
    const uint32_t field = r.key(&wire);
    switch (field) {
      case 3:
        r.expect(field, wire, kVarint, "TrainerSpec.model_type");
        m->model_type = static_cast<SpmModelType>(static_cast<int32_t>(r.varint()));
        break;
      case 24:
        r.expect(field, wire, kVarint, "TrainerSpec.treat_whitespace_as_suffix");
        m->treat_whitespace_as_suffix = r.varint() != 0;
        break;
      case 35:
        r.expect(field, wire, kVarint, "TrainerSpec.byte_fallback");
        m->byte_fallback = r.varint() != 0;
        break;
      case 44:
        r.expect(field, wire, kLen, "TrainerSpec.unk_surface");
        m->unk_surface = std::string(r.bytes());
        break;
      case 45:
        r.expect(field, wire, kLen, "TrainerSpec.unk_piece");
        m->unk_piece = std::string(r.bytes());
        break;
      case 46:
        r.expect(field, wire, kLen, "TrainerSpec.bos_piece");
        m->bos_piece = std::string(r.bytes());
        break;
      case 47:
        r.expect(field, wire, kLen, "TrainerSpec.eos_piece");
        m->eos_piece = std::string(r.bytes());
        break;
      default: r.skip(wire);
    }
  }
}

/// NormalizerSpec; DENORM selects the denormalizer_spec, of which only the charsmap matters.
void parse_normalizer_spec(WireReader r, SpmModel* m, bool denorm) {
  while (!r.done()) {
    uint32_t wire;
    const uint32_t field = r.key(&wire);
    if (field == 2) {
      r.expect(field, wire, kLen, "NormalizerSpec.precompiled_charsmap");
      (denorm ? m->denormalizer_charsmap : m->precompiled_charsmap) = std::string(r.bytes());
    } else if (denorm) {
      r.skip(wire);
    } else if (field == 1) {
      r.expect(field, wire, kLen, "NormalizerSpec.name");
      m->normalizer_name = std::string(r.bytes());
    } else if (field == 3 || field == 4 || field == 5) {
      r.expect(field, wire, kVarint, "NormalizerSpec flag");
      const bool v = r.varint() != 0;
      (field == 3 ? m->add_dummy_prefix : field == 4 ? m->remove_extra_whitespaces : m->escape_whitespaces) = v;
    } else {
      r.skip(wire);
    }
  }
}

void parse_model_proto(const std::string& bytes, SpmModel* m) {
  WireReader r(bytes.data(), bytes.data() + bytes.size(), bytes.data());
  bool have_trainer_spec = false;
  while (!r.done()) {
    uint32_t wire;
    const uint32_t field = r.key(&wire);
    switch (field) {
      case 1:
        r.expect(field, wire, kLen, "ModelProto.pieces");
        parse_piece(r.sub(), m);
        break;
      case 2:
        r.expect(field, wire, kLen, "ModelProto.trainer_spec");
        parse_trainer_spec(r.sub(), m);
        have_trainer_spec = true;
        break;
      case 3:
        r.expect(field, wire, kLen, "ModelProto.normalizer_spec");
        parse_normalizer_spec(r.sub(), m, false);
        break;
      case 5:
        r.expect(field, wire, kLen, "ModelProto.denormalizer_spec");
        parse_normalizer_spec(r.sub(), m, true);
        break;
      default: r.skip(wire);  // self_test_data (4) and fields of newer versions
    }
  }
  // sentencepiece always writes it, after the pieces: without it, a file cut between two
  // pieces would parse and fail later with a misleading reason (or as a unigram model).
  if (!have_trainer_spec)
    throw FormatError(fmt::format("it has no trainer_spec after its {} pieces: the file is truncated or not a "
                                  "tokenizer.model", m->pieces.size()));
}

/// "<0x41>" -> 0x41; -1 unless exactly sentencepiece's ByteToPiece format (upper-case hex).
int piece_to_byte(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      v = v * 16 + (c - '0');
    } else if (c >= 'A' && c <= 'F') {
      v = v * 16 + (c - 'A' + 10);
    } else {
      return -1;
    }
  }
  return v;
}

/// sentencepiece's ModelInterface::InitializePieces checks, with the same conditions.
void index_pieces(SpmModel* m) {
  if (m->pieces.empty()) throw FormatError("it has no pieces");
  std::vector<bool> byte_found(256, false);
  for (size_t i = 0; i < m->pieces.size(); ++i) {
    const SpmPiece& sp = m->pieces[i];
    const auto id = static_cast<int32_t>(i);
    if (sp.piece.empty()) throw FormatError(fmt::format("piece {} is empty", i));
    const bool normal = sp.type == SpmPieceType::kNormal || sp.type == SpmPieceType::kUserDefined ||
                        sp.type == SpmPieceType::kUnused;
    if (!(normal ? m->normal_ids : m->reserved_ids).emplace(sp.piece, id).second)
      throw FormatError(fmt::format("piece '{}' is defined twice (id {})", sp.piece, i));
    if (sp.type == SpmPieceType::kUserDefined) m->user_defined.insert(sp.piece);
    if (sp.type == SpmPieceType::kUnknown) {
      if (m->unk_id >= 0) throw FormatError(fmt::format("two unknown pieces (ids {} and {})", m->unk_id, i));
      m->unk_id = id;
    }
    if (sp.type == SpmPieceType::kByte) {
      if (!m->byte_fallback)
        throw FormatError(fmt::format("byte piece {} although byte_fallback is false", sp.piece));
      const int b = piece_to_byte(sp.piece);
      if (b < 0) throw FormatError(fmt::format("byte piece '{}' is not of the form <0xXX>", sp.piece));
      byte_found[static_cast<size_t>(b)] = true;
      m->byte_ids[static_cast<size_t>(b)] = id;
    }
  }
  if (m->unk_id < 0) throw FormatError("it has no unknown piece");
  if (m->byte_fallback && std::find(byte_found.begin(), byte_found.end(), false) != byte_found.end())
    throw FormatError("byte_fallback is true but some of the 256 <0xXX> pieces are missing");
  for (std::string_view u : m->user_defined) {
    if (std::find(m->user_defined_lengths.begin(), m->user_defined_lengths.end(), u.size()) ==
        m->user_defined_lengths.end())
      m->user_defined_lengths.push_back(u.size());
  }
  std::sort(m->user_defined_lengths.rbegin(), m->user_defined_lengths.rend());
}

const char* model_type_name(SpmModelType t) {
  switch (t) {
    case SpmModelType::kUnigram: return "unigram";
    case SpmModelType::kBpe: return "bpe";
    case SpmModelType::kWord: return "word";
    case SpmModelType::kChar: return "char";
  }
  return "unknown";
}

}  // namespace

int32_t SpmModel::piece_to_id(std::string_view piece) const {
  if (auto it = reserved_ids.find(piece); it != reserved_ids.end()) return it->second;
  if (auto it = normal_ids.find(piece); it != normal_ids.end()) return it->second;
  return unk_id;
}

size_t SpmModel::match_user_defined(std::string_view text) const {
  for (size_t len : user_defined_lengths)
    if (len <= text.size() && user_defined.count(text.substr(0, len))) return len;
  return 0;
}

void spm_model_parse(const std::string& bytes, const std::string& path, SpmModel* m) {
  try {
    parse_model_proto(bytes, m);
    index_pieces(m);
  } catch (const FormatError& e) {
    GLVQ_FAIL("tokenizer {} is not a valid sentencepiece model: {} (expected the tokenizer.model of a Llama "
              "checkpoint)", path, e.what());
  }
  const auto type_value = static_cast<int32_t>(m->model_type);
  GLVQ_CHECK(m->model_type == SpmModelType::kBpe,
             "tokenizer {}: unsupported tokenizer type {} (model_type {}): glvq implements sentencepiece BPE "
             "models such as Llama's", path, model_type_name(m->model_type), type_value);
  GLVQ_CHECK(m->precompiled_charsmap.empty(),
             "tokenizer {}: unsupported normalizer '{}' (a precompiled charsmap such as NFKC): glvq implements "
             "the 'identity' normalizer of Llama's tokenizer", path, m->normalizer_name);
  GLVQ_CHECK(m->denormalizer_charsmap.empty(),
             "tokenizer {}: unsupported denormalizer (precompiled charsmap)", path);
}

}  // namespace glvq
