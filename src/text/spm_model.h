#pragma once
/// A sentencepiece model (tokenizer.model) read without libsentencepiece or protobuf:
/// libsentencepiece links protobuf-lite, which clashes with LibTorch's full libprotobuf
/// in one process. Only the fields the encoder and decoder need are kept; meanings and
/// defaults follow sentencepiece_model.proto (v0.1.97).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace glvq {

/// ModelProto.SentencePiece.Type.
enum class SpmPieceType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

/// TrainerSpec.ModelType.
enum class SpmModelType : int32_t { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

struct SpmPiece {
  std::string piece;
  float score = 0.0f;
  SpmPieceType type = SpmPieceType::kNormal;
};

/// Parsed ModelProto plus the lookup tables sentencepiece's ModelInterface builds.
/// Not copyable: the maps hold string_views into `pieces`.
struct SpmModel {
  std::vector<SpmPiece> pieces;  ///< id -> piece

  // TrainerSpec
  SpmModelType model_type = SpmModelType::kUnigram;
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>";
  std::string unk_surface = " \xE2\x81\x87 ";

  // NormalizerSpec
  std::string normalizer_name;
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  std::string denormalizer_charsmap;  ///< denormalizer_spec.precompiled_charsmap

  // Built by spm_model_parse (ModelInterface::InitializePieces).
  std::unordered_map<std::string_view, int32_t> normal_ids;    ///< NORMAL, USER_DEFINED, UNUSED
  std::unordered_map<std::string_view, int32_t> reserved_ids;  ///< CONTROL, UNKNOWN, BYTE
  std::unordered_set<std::string_view> user_defined;
  std::vector<size_t> user_defined_lengths;  ///< distinct lengths, longest first
  std::array<int32_t, 256> byte_ids{};       ///< id of <0xXX>; valid when byte_fallback
  int32_t unk_id = -1;

  SpmModel() = default;
  SpmModel(const SpmModel&) = delete;
  SpmModel& operator=(const SpmModel&) = delete;

  /// sentencepiece's PieceToId: reserved pieces first, then normal ones, else unk_id.
  int32_t piece_to_id(std::string_view piece) const;
  SpmPieceType type(int32_t id) const { return pieces[static_cast<size_t>(id)].type; }
  /// Length of the longest USER_DEFINED piece that prefixes TEXT, 0 when none.
  size_t match_user_defined(std::string_view text) const;
};

/// Parses serialized ModelProto BYTES into MODEL (which must be fresh) and checks it as
/// sentencepiece's loader does. Throws glvq::Error "tokenizer PATH is not a valid
/// sentencepiece model: <reason>" for truncated or malformed data, and "unsupported
/// tokenizer type" for models other than BPE with the identity normalizer.
void spm_model_parse(const std::string& bytes, const std::string& path, SpmModel* model);

}  // namespace glvq
