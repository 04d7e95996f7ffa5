// Perplexity against bits per weight over several runs, with the FP perplexity.
#include "report/charts.h"
#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace glvq {

std::vector<double> nice_ticks(double lo, double hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    const double pad = std::max(1e-3, std::abs(hi) * 0.05);
    lo -= pad, hi += pad;
  }
  const double range = hi - lo;
  double step = std::pow(10.0, std::floor(std::log10(range)) - 2);
  // The smallest 1/2/5 x 10^k step that needs at most 8 intervals: then 5 to 10 ticks.
  for (int guard = 0; guard < 64 && range / step > 8; ++guard) {
    const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    step *= mant < 1.5 ? 2 : mant < 3.5 ? 2.5 : 2;
  }
  const double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> t;
  for (int k = 0; first + k * step <= last + step * 1e-6 && k < 64; ++k) {
    const double x = first + k * step;
    t.push_back(std::abs(x) < step * 1e-9 ? 0.0 : x);
  }
  return t;
}

namespace {
const char* method_colour(const std::string& m) {
  if (m == "glvq") return "#c0392b";
  if (m == "gptq") return "#2466a8";
  if (m == "rtn") return "#2e8b57";
  return "#555555";
}
}  // namespace

std::string ppl_bits_svg(const std::vector<RunView>& runs) {
  struct Pt {
    double x, y;
    const RunView* run;
  };
  std::map<std::string, std::vector<Pt>> series;
  std::vector<double> fps;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const RunView& r : runs) {
    if (r.ppl_fp && std::isfinite(*r.ppl_fp)) {
      if (std::none_of(fps.begin(), fps.end(), [&](double f) { return std::abs(f - *r.ppl_fp) <= 1e-9 * f; }))
        fps.push_back(*r.ppl_fp);
      ylo = std::min(ylo, *r.ppl_fp), yhi = std::max(yhi, *r.ppl_fp);
    }
    if (!r.ppl_quant || !r.bits_per_weight || !std::isfinite(*r.ppl_quant) || !std::isfinite(*r.bits_per_weight))
      continue;
    series[r.method].push_back({*r.bits_per_weight, *r.ppl_quant, &r});
    xlo = std::min(xlo, *r.bits_per_weight), xhi = std::max(xhi, *r.bits_per_weight);
    ylo = std::min(ylo, *r.ppl_quant), yhi = std::max(yhi, *r.ppl_quant);
  }
  if (series.empty()) return "";
  const std::vector<double> xt = nice_ticks(xlo - 0.25, xhi + 0.25), yt = nice_ticks(ylo, yhi);
  const double x0 = xt.front(), x1 = xt.back(), y0 = yt.front(), y1 = yt.back();
  const double left = 64, top = 20, pw = 560, ph = 320, width = left + pw + 150, height = top + ph + 50;
  const auto px = [&](double x) { return left + pw * (x - x0) / (x1 - x0); };
  const auto py = [&](double y) { return top + ph * (1 - (y - y0) / (y1 - y0)); };
  SvgWriter s(width, height, "perplexity against bits per weight");
  s.rect(left, top, pw, ph, "#ffffff", "plot-area");
  for (double x : xt) {
    s.line(px(x), top, px(x), top + ph, "#e4e4e4");
    s.text(px(x), top + ph + 16, num_short(x, 4), "middle", 11);
  }
  for (double y : yt) {
    s.line(left, py(y), left + pw, py(y), "#e4e4e4");
    s.text(left - 6, py(y) + 4, num_short(y, 5), "end", 11);
  }
  s.line(left, top + ph, left + pw, top + ph, "#333333");
  s.line(left, top, left, top + ph, "#333333");
  s.text(left + pw / 2, top + ph + 36, "bits per weight (all stored arrays)", "middle", 12);
  s.text(16, top + ph / 2, "perplexity", "middle", 12);
  for (double f : fps) {
    s.line(left, py(f), left + pw, py(f), "#000000", 1.2, "6 4");
    s.text(left + pw - 4, py(f) - 5, "FP " + num_short(f, 5), "end", 11, "fp-label");
  }
  double ly = top + 8;
  for (auto& [method, pts] : series) {
    std::sort(pts.begin(), pts.end(), [](const Pt& a, const Pt& b) { return a.x < b.x; });
    std::string line;
    for (const Pt& p : pts) line += coord(px(p.x)) + "," + coord(py(p.y)) + " ";
    if (pts.size() > 1) s.polyline(line, method_colour(method));
    for (const Pt& p : pts) {
      s.circle(px(p.x), py(p.y), 4.5, method_colour(method),
               fmt::format("{}: {} bits/weight, ppl {}", p.run->title, num_short(p.x, 5), num_short(p.y, 6)), p.x,
               p.y);
      s.text(px(p.x) + 7, py(p.y) - 7, p.run->title, "start", 10, "point-label");
    }
    s.circle(left + pw + 20, ly, 5, method_colour(method));
    s.text(left + pw + 30, ly + 4, method.empty() ? "(no method)" : method, "start", 11);
    ly += 18;
  }
  return s.finish();
}

}  // namespace glvq
