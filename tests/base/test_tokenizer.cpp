// Tokenizer wrapper and the evaluation-corpus protocol of models/tiny-llama/reference.json.
// Tests run with cwd = repository root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

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
  const std::vector<int32_t> ids = tokenize_corpus(tok, read_text_file("data/eval.txt"));
  EXPECT_EQ(ids.size(), 337370u);
  EXPECT_EQ(ids.size() / 1024, 329u);
}

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
