#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace glvq {
namespace {

void append_utf8(std::string& o, uint32_t cp) {
  if (cp < 0x80) {
    o += static_cast<char>(cp);
  } else if (cp < 0x800) {
    o += static_cast<char>(0xC0 | (cp >> 6));
    o += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    o += static_cast<char>(0xE0 | (cp >> 12));
    o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    o += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    o += static_cast<char>(0xF0 | (cp >> 18));
    o += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    o += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

constexpr uint32_t kReplacement = 0xFFFD;

// Decodes one UTF-8 sequence at S[I]; advances I. Malformed, overlong, surrogate or
// out-of-range sequences give U+FFFD and consume one byte.
uint32_t next_code_point(const std::string& s, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = byte(i);
  int len = 0;
  uint32_t cp = 0, min = 0;
  if (c < 0x80) { ++i; return c; }
  if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
  else { ++i; return kReplacement; }
  if (i + len > s.size()) { ++i; return kReplacement; }
  for (int k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) { ++i; return kReplacement; }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { ++i; return kReplacement; }
  i += len;
  return cp;
}

bool xml_allowed(uint32_t cp) {
  if (cp == 0x9 || cp == 0xA || cp == 0xD) return true;
  if (cp < 0x20) return false;
  return cp != 0xFFFE && cp != 0xFFFF;
}

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string o;
  o.reserve(text.size() + 16);
  for (size_t i = 0; i < text.size();) {
    const uint32_t cp = next_code_point(text, i);
    switch (cp) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: append_utf8(o, xml_allowed(cp) ? cp : kReplacement);
    }
  }
  return o;
}

std::string num_exact(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{}", v);
}

std::string num_short(double v, int sig) {
  if (!std::isfinite(v)) return "-";
  return fmt::format("{:.{}g}", v, std::max(1, sig));
}

std::string Rgb::hex() const { return fmt::format("#{:02x}{:02x}{:02x}", r, g, b); }

double relative_luminance(const Rgb& c) {
  const auto lin = [](uint8_t x) {
    const double s = x / 255.0;
    return s <= 0.04045 ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
}

Rgb heat_colour(double t) {
  // Every channel is non-increasing from stop to stop and one falls strictly in each
  // segment, so the luminance (increasing in each channel) falls strictly along the ramp.
  static constexpr std::array<std::array<double, 3>, 5> stops = {{{255, 250, 205},
                                                                  {250, 205, 115},
                                                                  {238, 140, 60},
                                                                  {205, 60, 40},
                                                                  {120, 15, 40}}};
  if (!(t > 0)) t = 0;  // NaN too
  if (t > 1) t = 1;
  const double x = t * (stops.size() - 1);
  const size_t k = std::min(stops.size() - 2, static_cast<size_t>(x));
  const double f = x - static_cast<double>(k);
  const auto ch = [&](int c) {
    return static_cast<uint8_t>(std::lround(stops[k][c] + f * (stops[k + 1][c] - stops[k][c])));
  };
  return Rgb{ch(0), ch(1), ch(2)};
}

std::optional<double> log_scale_position(double v, double lo, double hi) {
  if (!(v > 0) || !(lo > 0) || !(hi >= lo) || !std::isfinite(v) || !std::isfinite(hi)) return std::nullopt;
  if (hi == lo) return 0.5;
  const double t = (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
  return std::clamp(t, 0.0, 1.0);
}

std::string coord(double v) { return std::isfinite(v) ? fmt::format("{:.2f}", v) : "0"; }

namespace {
std::string attr(const char* name, const std::string& value) {
  return value.empty() ? "" : fmt::format(" {}=\"{}\"", name, xml_escape(value));
}
std::string title(const std::string& tooltip) {
  return tooltip.empty() ? "" : "<title>" + xml_escape(tooltip) + "</title>";
}
}  // namespace

SvgWriter::SvgWriter(double width, double height, const std::string& label) {
  out_ = fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                     "role=\"img\"{2}>\n",
                     coord(width), coord(height), attr("aria-label", label));
}

void SvgWriter::rect(double x, double y, double w, double h, const std::string& fill, const std::string& class_name,
                     const std::string& tooltip, std::optional<double> data_v) {
  const std::string dv = data_v ? attr("data-v", num_exact(*data_v)) : "";
  const std::string body = title(tooltip);
  out_ += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"{}{}{}", coord(x), coord(y),
                      coord(std::max(0.0, w)), coord(std::max(0.0, h)), attr("fill", fill), attr("class", class_name),
                      dv);
  out_ += body.empty() ? "/>\n" : ">" + body + "</rect>\n";
}

void SvgWriter::line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
                     const std::string& dash) {
  out_ += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"{} stroke-width=\"{}\"{}/>\n", coord(x1),
                      coord(y1), coord(x2), coord(y2), attr("stroke", stroke), coord(width),
                      attr("stroke-dasharray", dash));
}

void SvgWriter::text(double x, double y, const std::string& s, const std::string& anchor, double size,
                     const std::string& class_name) {
  out_ += fmt::format("<text x=\"{}\" y=\"{}\"{} font-size=\"{}\"{}>{}</text>\n", coord(x), coord(y),
                      attr("text-anchor", anchor), coord(size), attr("class", class_name), xml_escape(s));
}

void SvgWriter::circle(double cx, double cy, double r, const std::string& fill, const std::string& tooltip,
                       std::optional<double> data_x, std::optional<double> data_y) {
  const std::string body = title(tooltip);
  out_ += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\"{}{}{}", coord(cx), coord(cy), coord(r), attr("fill", fill),
                      data_x ? attr("data-x", num_exact(*data_x)) : "", data_y ? attr("data-y", num_exact(*data_y)) : "");
  out_ += body.empty() ? "/>\n" : ">" + body + "</circle>\n";
}

void SvgWriter::polyline(const std::string& points, const std::string& stroke, double width) {
  out_ += fmt::format("<polyline points=\"{}\" fill=\"none\"{} stroke-width=\"{}\"/>\n", xml_escape(points),
                      attr("stroke", stroke), coord(width));
}

std::string SvgWriter::finish() {
  if (open_) out_ += "</svg>\n";
  open_ = false;
  return std::move(out_);
}

}  // namespace glvq
