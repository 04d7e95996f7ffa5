// The relative-loss heatmap: one row per block, one column per linear.
#include "report/charts.h"
#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace glvq {

HeatMetric heatmap_metric(const RunView& v) {
  bool rel = false, abs = false;
  for (const LayerView& l : v.layers) {
    if (l.block < 0) continue;
    rel = rel || l.rel_loss.has_value();
    abs = abs || l.loss.has_value();
  }
  return rel ? HeatMetric::kRelativeLoss : abs ? HeatMetric::kLoss : HeatMetric::kNone;
}

std::optional<double> heatmap_value(const LayerView& l, HeatMetric m) {
  if (m == HeatMetric::kRelativeLoss) return l.rel_loss;
  if (m == HeatMetric::kLoss) return l.loss;
  return std::nullopt;
}

namespace {

// Columns: the Llama linears first, then any other linear names, sorted.
std::vector<std::pair<std::string, std::string>> grid_columns(const RunView& v) {
  std::vector<std::pair<std::string, std::string>> cols = llama_linears();
  std::set<std::string> known, extra;
  for (const auto& c : cols) known.insert(c.first);
  for (const LayerView& l : v.layers)
    if (l.block >= 0 && !known.count(l.linear)) extra.insert(l.linear);
  for (const auto& e : extra) cols.emplace_back(e, e);
  return cols;
}

}  // namespace

std::string loss_heatmap_svg(const RunView& v) {
  const HeatMetric m = heatmap_metric(v);
  if (m == HeatMetric::kNone) return "";
  const auto cols = grid_columns(v);
  std::map<int, std::map<std::string, const LayerView*>> grid;
  double lo = INFINITY, hi = 0;
  for (const LayerView& l : v.layers) {
    if (l.block < 0) continue;
    grid[l.block][l.linear] = &l;
    const auto x = heatmap_value(l, m);
    if (x && *x > 0 && std::isfinite(*x)) lo = std::min(lo, *x), hi = std::max(hi, *x);
  }
  if (!(hi > 0)) lo = hi = 1;  // nothing positive: every cell draws as "no data"
  const double cw = 62, ch = 20, left = 64, top = 34, legend_w = 110;
  const double width = left + cw * static_cast<double>(cols.size()) + legend_w;
  const double height = std::max(top + ch * static_cast<double>(grid.size()) + 10, top + 200);
  const std::string what = m == HeatMetric::kRelativeLoss ? "relative loss" : "loss";
  SvgWriter s(width, height, "heatmap of " + what + " per block and linear");
  for (size_t c = 0; c < cols.size(); ++c)
    s.text(left + cw * (static_cast<double>(c) + 0.5), top - 10, cols[c].second, "middle", 12, "col");
  double y = top;
  for (const auto& [block, row] : grid) {
    s.text(left - 8, y + ch * 0.7, fmt::format("block {}", block), "end", 11);
    for (size_t c = 0; c < cols.size(); ++c) {
      const double x = left + cw * static_cast<double>(c);
      auto it = row.find(cols[c].first);
      if (it == row.end()) continue;  // not quantized in this run: blank
      const LayerView& l = *it->second;
      const auto val = heatmap_value(l, m);
      const auto pos = val ? log_scale_position(*val, lo, hi) : std::nullopt;
      if (!pos) {
        s.rect(x + 1, y + 1, cw - 2, ch - 2, "#d8d8d8", "heat-cell nodata", l.name + ": no data");
        s.text(x + cw / 2, y + ch * 0.7, "n/a", "middle", 10);
        continue;
      }
      const Rgb col = heat_colour(*pos);
      s.rect(x + 1, y + 1, cw - 2, ch - 2, col.hex(), "heat-cell",
             fmt::format("{}: {} {}", l.name, what, num_short(*val, 6)), *val);
      const bool dark = relative_luminance(col) < 0.3;
      s.text(x + cw / 2, y + ch * 0.7, num_short(*val, 2), "middle", 10, dark ? "on-dark" : "");
    }
    y += ch;
  }
  // Legend: the ramp from lo (top) to hi (bottom), labelled at both ends and the middle.
  const double lx = left + cw * static_cast<double>(cols.size()) + 16, lh = 160, steps = 32;
  for (int i = 0; i < steps; ++i) {
    const double t = (i + 0.5) / steps;
    s.rect(lx, top + lh * i / steps, 16, lh / steps + 0.5, heat_colour(t).hex());
  }
  s.text(lx + 22, top + 8, num_short(lo, 3), "start", 10);
  s.text(lx + 22, top + lh / 2 + 4, num_short(std::sqrt(lo * hi), 3), "start", 10);
  s.text(lx + 22, top + lh, num_short(hi, 3), "start", 10);
  s.text(lx, top - 10, what + " (log)", "start", 10);
  return s.finish();
}

}  // namespace glvq
