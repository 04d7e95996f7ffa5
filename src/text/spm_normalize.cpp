#include "text/spm_codec.h"

namespace glvq {

size_t spm_utf8_char_len(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  const auto trail = [&](size_t i) { return (b(i) & 0xC0) == 0x80; };
  const auto valid = [](uint32_t cp) { return cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF); };
  const size_t n = s.size();
  const uint32_t c = b(0);
  if (c < 0x80) return 1;
  if (n >= 2 && (c & 0xE0) == 0xC0 && trail(1)) {
    const uint32_t cp = ((c & 0x1F) << 6) | (b(1) & 0x3F);
    if (cp >= 0x80) return 2;
  } else if (n >= 3 && (c & 0xF0) == 0xE0 && trail(1) && trail(2)) {
    const uint32_t cp = ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    if (cp >= 0x800 && valid(cp)) return 3;
  } else if (n >= 4 && (c & 0xF8) == 0xF0 && trail(1) && trail(2) && trail(3)) {
    const uint32_t cp = ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    if (cp >= 0x10000 && valid(cp)) return 4;
  }
  return 0;
}

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

/// Normalizer::NormalizePrefix without a charsmap: the next user-defined piece or
/// character, and how many input bytes it consumes.
std::string_view next_unit(const SpmModel& m, std::string_view input, size_t* consumed) {
  if (size_t len = m.match_user_defined(input)) {
    *consumed = len;
    return input.substr(0, len);
  }
  const size_t len = spm_utf8_char_len(input);
  if (len == 0) {  // malformed: one byte becomes U+FFFD
    *consumed = 1;
    return kReplacementChar;
  }
  *consumed = len;
  return input.substr(0, len);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string spm_normalize(const SpmModel& m, std::string_view input) {
  std::string out;
  if (input.empty()) return out;
  size_t n = 0;
  if (m.remove_extra_whitespaces) {
    while (!input.empty() && next_unit(m, input, &n) == " ") input.remove_prefix(n);
    if (input.empty()) return out;
  }
  out.reserve(input.size() * 3 + kSpaceSymbol.size());
  const std::string_view ws = m.escape_whitespaces ? kSpaceSymbol : std::string_view(" ");
  if (!m.treat_whitespace_as_suffix && m.add_dummy_prefix) out += ws;

  bool is_prev_space = m.remove_extra_whitespaces;
  while (!input.empty()) {
    std::string_view unit = next_unit(m, input, &n);
    while (is_prev_space && !unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
    if (!unit.empty()) {
      for (char c : unit) {
        if (m.escape_whitespaces && c == ' ') {
          out += kSpaceSymbol;
        } else {
          out += c;
        }
      }
      is_prev_space = unit.back() == ' ';
    }
    input.remove_prefix(n);
    if (!m.remove_extra_whitespaces) is_prev_space = false;
  }

  if (m.remove_extra_whitespaces) {
    while (ends_with(out, ws)) out.resize(out.size() - ws.size());
  }
  if (m.treat_whitespace_as_suffix && m.add_dummy_prefix) out += ws;
  return out;
}

}  // namespace glvq
