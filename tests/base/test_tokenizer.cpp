// glvq's own sentencepiece tokenizer and the evaluation-corpus protocol of
// models/tiny-llama/reference.json. With GLVQ_HAVE_SPM_REFERENCE, libsentencepiece is the
// independent reference: ids and decoded text must be identical. Tests run with cwd =
// repository root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#ifdef GLVQ_HAVE_SPM_REFERENCE
#include <sentencepiece_processor.h>
#endif

#include "common/error.h"
#include "common/fs_util.h"
#include "text/tokenizer.h"

namespace glvq {
namespace {

const char* kModel = "models/tiny-llama/tokenizer.model";

template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no glvq::Error thrown>";
}

std::string temp_path(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  return std::string(base && *base ? base : "/tmp") + "/glvq-test-" + std::to_string(::getpid()) + "-" + name;
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(Tokenizer, VocabAndSpecialIds) {
  Tokenizer tok(kModel);
  EXPECT_EQ(tok.vocab_size(), 4096);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  const std::vector<int32_t> ids = tok.encode("Hello world");
  ASSERT_FALSE(ids.empty());
  EXPECT_NE(ids.front(), tok.bos_id()) << "encode must not add BOS";
  EXPECT_NE(ids.back(), tok.eos_id()) << "encode must not add EOS";
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, tok.vocab_size());
  }
}

// The model's normalizer is "identity" with byte fallback: no NFKC, no whitespace folding,
// so decode(encode(s)) == s exactly, including runs of spaces, tabs, newlines and non-ASCII.
TEST(Tokenizer, RoundTripIsExact) {
  Tokenizer tok(kModel);
  const std::vector<std::string> texts = {
      "Hello world", "  two  spaces", " leading space", "trailing ", "tab\there", "line\nbreak\n\nparagraph",
      "h\xC3\xA9llo w\xC3\xB6rld",                       // héllo wörld
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",            // 日本語 (byte fallback)
      "\xEF\xAC\x81 ligature, \xEF\xBC\xA1 fullwidth",  // ﬁ, Ａ: kept, not NFKC-folded
      "emoji \xF0\x9F\x98\x80", ""};
  for (const std::string& s : texts) EXPECT_EQ(tok.decode(tok.encode(s)), s) << "text: " << s;
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(Tokenizer, MissingFileNamesPath) {
  const std::string path = temp_path("no-such-tokenizer.model");
  const std::string msg = error_message([&] { Tokenizer tok(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(Tokenizer, CorruptFileNamesPath) {
  const std::string path = temp_path("corrupt-tokenizer.model");
  std::string garbage(4096, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 2654435761u) >> 13);
  write_file_atomic(path, garbage);
  const std::string msg = error_message([&] { Tokenizer tok(path); });
  ::unlink(path.c_str());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a valid sentencepiece model"), std::string::npos) << msg;
}

// Serialized protobuf messages for hand-made tokenizer.model files.
class ProtoWriter {
 public:
  ProtoWriter& varint(int field, uint64_t v) {
    key(field, 0);
    put_varint(v);
    return *this;
  }
  ProtoWriter& str(int field, const std::string& s) {
    key(field, 2);
    put_varint(s.size());
    bytes_ += s;
    return *this;
  }
  ProtoWriter& f32(int field, float x) {
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((bits >> (8 * i)) & 0xFF);
    return *this;
  }
  ProtoWriter& msg(int field, const ProtoWriter& m) { return str(field, m.bytes_); }
  const std::string& bytes() const { return bytes_; }

 private:
  void key(int field, int wire) { put_varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire)); }
  void put_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) bytes_ += static_cast<char>((v & 0x7F) | 0x80);
    bytes_ += static_cast<char>(v);
  }
  std::string bytes_;
};

struct SyntheticOptions {
  int model_type = 2;  // BPE
  bool byte_fallback = false, add_dummy_prefix = true, remove_extra_whitespaces = true;
  bool escape_whitespaces = true, treat_whitespace_as_suffix = false;
};

// A small BPE model exercising what tiny-llama's does not: USER_DEFINED pieces (overlapping),
// UNUSED pieces on the merge path, score ties, no byte fallback (runs of unknowns).
std::string synthetic_model(const SyntheticOptions& o) {
  ProtoWriter m;
  const auto piece = [&](const std::string& p, float score, int type) {
    m.msg(1, ProtoWriter().str(1, p).f32(2, score).varint(3, static_cast<uint64_t>(type)));
  };
  piece("<unk>", 0, 2);
  piece("<s>", 0, 3);
  piece("</s>", 0, 3);
  piece("<sep>", 0, 4);
  piece("<sep>x", 0, 4);
  if (o.byte_fallback) {
    for (int b = 0; b < 256; ++b) piece(fmt::format("<0x{:02X}>", b), 0, 6);
  }
  const std::string ws = "\xE2\x96\x81";
  for (const char* c : {"a", "b", "c", "d", "e", " ", "x", "\xC3\xA9"}) piece(c, -10, 1);
  piece(ws, -10, 1);
  piece("ab", -1, 1);
  piece("bc", -1, 1);            // ties with "ab": the leftmost pair wins
  piece("abc", -0.5f, 5);        // UNUSED: merged, then split back
  piece("abcd", -0.7f, 1);       // reachable only through the UNUSED "abc"
  piece("cd", -2, 1);
  piece("de", -3, 1);
  piece(ws + "a", -1.5f, 1);
  piece(ws + ws, -2.5f, 1);
  piece(" a", -1.5f, 1);
  piece("e" + ws, -1.2f, 1);
  piece("\xC3\xA9" + ws, -1.1f, 1);
  m.msg(2, ProtoWriter()
               .varint(3, static_cast<uint64_t>(o.model_type))
               .varint(24, o.treat_whitespace_as_suffix)
               .varint(35, o.byte_fallback)
               .varint(40, 0)
               .varint(41, 1)
               .varint(42, 2));
  m.msg(3, ProtoWriter()
               .str(1, "identity")
               .varint(3, o.add_dummy_prefix)
               .varint(4, o.remove_extra_whitespaces)
               .varint(5, o.escape_whitespaces));
  return m.bytes();
}

// Inputs for the comparisons with libsentencepiece.
const std::vector<std::string>& tricky_strings() {
  static const std::vector<std::string> texts = {
      "", " ", "  ", "\t", "\n", "\n\n", "\n\n\n", " \n ", "Hello world", "  two  spaces", " leading space",
      "trailing ", "trailing  ", "   many   inner    spaces   ", "tab\there", "\ttab start", "line\nbreak\n\nparagraph",
      "\r\n windows\r\n", "\xE2\x96\x81", "\xE2\x96\x81\xE2\x96\x81", "a\xE2\x96\x81" "b", " \xE2\x96\x81 ",
      "h\xC3\xA9llo w\xC3\xB6rld", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "\xEF\xAC\x81 ligature, \xEF\xBC\xA1 fullwidth",
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5 flags",
      "zero\xE2\x80\x8Bwidth", "nbsp\xC2\xA0here", "<s> </s> <unk> <0x41>", "<sep>x <sep>xx<sep>", "abcd abc ab bc cd",
      "abcde\xC3\xA9 e e  a", "aaaa bbbb", std::string("nul\0byte", 8), "bad \xFF\xFE utf8 \xC3", "\xED\xA0\x80 surrogate",
      "\xC0\x80 overlong", "\xEF\xBF\xBD replacement", "x\xF4\x90\x80\x80 beyond U+10FFFF",
      "1234567890 3.14159 -42", "CamelCaseWord snake_case_word", "\"quoted\" (paren) [bracket] {brace}",
      "The quick brown fox jumps over the lazy dog.", std::string(300, 'a'), std::string(100, ' ') + "x"};
  return texts;
}

TEST(Tokenizer, CorruptOrTruncatedModelNamesPath) {
  const std::string good = read_file(kModel);
  const std::string path = temp_path("bad-tokenizer.model");
  const std::vector<size_t> cuts = {0, 1, 5, 100, good.size() / 2 + 3, good.size() - 1};
  for (size_t cut : cuts) {
    write_file_atomic(path, good.substr(0, cut));
    const std::string msg = error_message([&] { Tokenizer tok(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << "cut " << cut << ": " << msg;
    EXPECT_NE(msg.find("is not a valid sentencepiece model"), std::string::npos) << "cut " << cut << ": " << msg;
  }
  ::unlink(path.c_str());
}

// Offset just past the last top-level `pieces` field (1, length-delimited: key byte 0x0A),
// where sentencepiece writes trainer_spec: a cut there leaves only whole pieces.
size_t end_of_pieces(const std::string& b) {
  size_t p = 0;
  while (p < b.size() && static_cast<unsigned char>(b[p]) == 0x0A) {
    uint64_t len = 0;
    int shift = 0;
    for (++p; static_cast<unsigned char>(b[p]) & 0x80; ++p, shift += 7) len |= uint64_t(b[p] & 0x7F) << shift;
    len |= uint64_t(static_cast<unsigned char>(b[p])) << shift;
    p += 1 + len;
  }
  return p;
}

TEST(Tokenizer, ModelCutBetweenPiecesSaysTruncated) {
  const std::string good = read_file(kModel);
  const size_t cut = end_of_pieces(good);
  ASSERT_GT(cut, 0u);
  ASSERT_LT(cut, good.size());
  const std::string path = temp_path("cut-tokenizer.model");
  write_file_atomic(path, good.substr(0, cut));
  const std::string msg = error_message([&] { Tokenizer tok(path); });
  ::unlink(path.c_str());
  EXPECT_NE(msg.find(path + " is not a valid sentencepiece model: it has no trainer_spec after its 4096 pieces: "
                     "the file is truncated"), std::string::npos) << msg;
}

TEST(Tokenizer, UnigramModelIsRefused) {
  SyntheticOptions o;
  o.model_type = 1;
  const std::string path = temp_path("unigram.model");
  write_file_atomic(path, synthetic_model(o));
  const std::string msg = error_message([&] { Tokenizer tok(path); });
  ::unlink(path.c_str());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported tokenizer type unigram"), std::string::npos) << msg;
}

TEST(Tokenizer, DecodeRejectsOutOfRangeIds) {
  Tokenizer tok(kModel);
  EXPECT_NE(error_message([&] { tok.decode({5, 4096}); }).find("4096"), std::string::npos);
  EXPECT_NE(error_message([&] { tok.decode({-1}); }).find("-1"), std::string::npos);
}

TEST(Tokenizer, CorpusJoinsPiecesWithEncodedBlankLine) {
  Tokenizer tok(kModel);
  const std::vector<int32_t> sep = tok.encode("\n\n");
  EXPECT_EQ(sep, (std::vector<int32_t>{4002, 13, 13}));  // "▁" + two <0x0A> byte tokens
  const std::string a = "First paragraph.", b = "Second one\nwith a line break.", c = "Third.";
  EXPECT_EQ(tokenize_corpus(tok, a + "\n\n" + b + "\n\n" + c),
            concat({tok.encode(a), sep, tok.encode(b), sep, tok.encode(c)}));
  // Not the same as one encode of the whole text: each piece gets its own dummy prefix.
  EXPECT_NE(tokenize_corpus(tok, a + "\n\n" + b), tok.encode(a + "\n\n" + b));
}

// Like Python's str.split("\n\n"): empty pieces still get their separator.
TEST(Tokenizer, CorpusEmptyPiecesKeepSeparators) {
  Tokenizer tok(kModel);
  const std::vector<int32_t> sep = tok.encode("\n\n");
  EXPECT_EQ(tokenize_corpus(tok, "a\n\n\n\nb"), concat({tok.encode("a"), sep, sep, tok.encode("b")}));
  EXPECT_EQ(tokenize_corpus(tok, "\n\nx\n\n"), concat({sep, tok.encode("x"), sep}));
  // "\n\n\n" splits as ["a", "\nb"] (leftmost, non-overlapping).
  EXPECT_EQ(tokenize_corpus(tok, "a\n\n\nb"), concat({tok.encode("a"), sep, tok.encode("\nb")}));
  EXPECT_TRUE(tokenize_corpus(tok, "").empty());
  EXPECT_EQ(tokenize_corpus(tok, "\n\n"), sep);
}

// reference.json, eval_shared: ctx 1024 -> 329 chunks, 337370 tokens.
TEST(Tokenizer, EvalCorpusMatchesReference) {
  Tokenizer tok(kModel);
  const std::string text = read_text_file("data/eval.txt");
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tokenize_corpus(tok, text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tokenize_corpus(data/eval.txt): %zu bytes -> %zu tokens in %.3f s\n", text.size(), ids.size(), s);
  EXPECT_EQ(ids.size(), 337370u);
  EXPECT_EQ(ids.size() / 1024, 329u);
}

#ifdef GLVQ_HAVE_SPM_REFERENCE

std::vector<int32_t> reference_encode(const sentencepiece::SentencePieceProcessor& sp, const std::string& text) {
  std::vector<int> ids;
  const auto status = sp.Encode(text, &ids);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string reference_decode(const sentencepiece::SentencePieceProcessor& sp, const std::vector<int32_t>& ids) {
  std::string text;
  const auto status = sp.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return text;
}

std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += (c < 0x20 || c >= 0x7F) ? fmt::format("\\x{:02X}", c) : std::string(1, c);
  return out;
}

/// Encodes every "\n\n" paragraph of PATH with both; returns how many there were.
size_t compare_paragraphs(const Tokenizer& tok, const sentencepiece::SentencePieceProcessor& sp,
                          const std::string& path) {
  const std::string text = read_text_file(path);
  size_t n = 0, mismatches = 0, begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find("\n\n", begin);
    if (end == std::string::npos) end = text.size();
    const std::string para = text.substr(begin, end - begin);
    const std::vector<int32_t> ids = tok.encode(para);
    const std::vector<int32_t> want = reference_encode(sp, para);
    ++n;
    if (ids != want && ++mismatches <= 5) ADD_FAILURE() << path << " paragraph " << n - 1 << " differs: " << para;
    if (tok.decode(ids) != reference_decode(sp, want) && ++mismatches <= 5)
      ADD_FAILURE() << path << " paragraph " << n - 1 << " decodes differently";
    begin = end + 2;
  }
  EXPECT_EQ(mismatches, 0u) << path;
  return n;
}

sentencepiece::SentencePieceProcessor& reference_processor() {
  static sentencepiece::SentencePieceProcessor sp;
  static const bool loaded = [] {
    const auto status = sp.Load(kModel);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return status.ok();
  }();
  EXPECT_TRUE(loaded);
  return sp;
}

TEST(TokenizerReference, SpecialIdsAndVocab) {
  Tokenizer tok(kModel);
  const auto& sp = reference_processor();
  EXPECT_EQ(tok.vocab_size(), sp.GetPieceSize());
  EXPECT_EQ(tok.bos_id(), sp.bos_id());
  EXPECT_EQ(tok.eos_id(), sp.eos_id());
}

TEST(TokenizerReference, EveryParagraphOfEvalAndCalib) {
  Tokenizer tok(kModel);
  const auto& sp = reference_processor();
  EXPECT_GT(compare_paragraphs(tok, sp, "data/eval.txt"), 100u);
  EXPECT_GT(compare_paragraphs(tok, sp, "data/calib.txt"), 100u);
}

// One encode of the whole file: long inputs, every kind of whitespace run in one string.
TEST(TokenizerReference, WholeEvalFileInOneEncode) {
  Tokenizer tok(kModel);
  const std::string text = read_text_file("data/eval.txt");
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(ids, reference_encode(reference_processor(), text));
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(TokenizerReference, TrickyStrings) {
  Tokenizer tok(kModel);
  const auto& sp = reference_processor();
  for (const std::string& s : tricky_strings()) {
    const std::vector<int32_t> ids = tok.encode(s);
    const std::vector<int32_t> want = reference_encode(sp, s);
    EXPECT_EQ(ids, want) << "text: " << escaped(s);
    EXPECT_EQ(tok.decode(ids), reference_decode(sp, want)) << "text: " << escaped(s);
  }
}

// Arbitrary id sequences: control, unknown and stray byte pieces (malformed UTF-8).
TEST(TokenizerReference, DecodeRandomIds) {
  Tokenizer tok(kModel);
  const auto& sp = reference_processor();
  const uint32_t seed = 20240611;
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids(rng() % 12);
    for (int32_t& id : ids) {
      const uint32_t r = rng() % 4;
      id = static_cast<int32_t>(r == 0 ? rng() % 3 : r == 1 ? 3 + rng() % 256 : rng() % 4096);
    }
    std::string list;
    for (int32_t id : ids) list += std::to_string(id) + " ";
    EXPECT_EQ(tok.decode(ids), reference_decode(sp, ids)) << "ids: " << list;
  }
}

// Hand-made models: every normalizer flag, byte fallback on and off, user-defined and
// unused pieces, against libsentencepiece loading the same file.
TEST(TokenizerReference, SyntheticModelsAllOptions) {
  const std::string path = temp_path("synthetic.model");
  for (int bits = 0; bits < 32; ++bits) {
    SyntheticOptions o;
    o.byte_fallback = bits & 1;
    o.add_dummy_prefix = bits & 2;
    o.remove_extra_whitespaces = bits & 4;
    o.escape_whitespaces = bits & 8;
    o.treat_whitespace_as_suffix = bits & 16;
    write_file_atomic(path, synthetic_model(o));
    sentencepiece::SentencePieceProcessor sp;
    ASSERT_TRUE(sp.Load(path).ok()) << "options " << bits;
    Tokenizer tok(path);
    EXPECT_EQ(tok.vocab_size(), sp.GetPieceSize());
    std::vector<std::string> texts = tricky_strings();
    for (const char* extra : {"abc", "abcd", "xabcdx", "bcd", "ab ab  a", "e e", "\xC3\xA9 \xC3\xA9", "<sep>", "<sep>xabc",
                              "a<sep>b", "zzz qqq", "a zz b", " a a ", "\xE2\x96\x81" "a"})
      texts.push_back(extra);
    for (const std::string& s : texts) {
      const std::vector<int32_t> ids = tok.encode(s);
      const std::vector<int32_t> want = reference_encode(sp, s);
      EXPECT_EQ(ids, want) << "options " << bits << ", text: " << escaped(s);
      EXPECT_EQ(tok.decode(ids), reference_decode(sp, want)) << "options " << bits << ", text: " << escaped(s);
    }
  }
  ::unlink(path.c_str());
}

#endif  // GLVQ_HAVE_SPM_REFERENCE

TEST(Tokenizer, ReadTextFileErrorsNameFile) {
  const std::string missing = temp_path("missing.txt");
  std::string msg = error_message([&] { read_text_file(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;

  const std::string empty = temp_path("empty.txt");
  write_file_atomic(empty, "");
  msg = error_message([&] { read_text_file(empty); });
  ::unlink(empty.c_str());
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
}

}  // namespace
}  // namespace glvq
