// The bit-width map: per layer, the share of its groups at N-1, N and N+1 bits
// (GLVQ's bit allocation moves groups between widths; RTN/GPTQ keep all at N).
#include "report/charts.h"
#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

namespace glvq {

BitShare bit_share(const LayerView& l, int n) {
  BitShare s;
  int64_t lower = 0, at = 0, higher = 0, other = 0;
  for (const auto& [bits, count] : l.bit_groups) {
    if (bits == n - 1) lower += count;
    else if (bits == n) at += count;
    else if (bits == n + 1) higher += count;
    else other += count;
  }
  s.groups = lower + at + higher + other;
  if (s.groups > 0) {
    const double g = static_cast<double>(s.groups);
    s.lower = lower / g, s.at = at / g, s.higher = higher / g, s.other = other / g;
  }
  return s;
}

std::optional<int> bit_share_target(const RunView& v) {
  if (v.target_bits) return v.target_bits;
  std::map<int, int64_t> all;
  for (const LayerView& l : v.layers)
    for (const auto& [b, c] : l.bit_groups) all[b] += c;
  if (all.empty()) return std::nullopt;
  return std::max_element(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.second < b.second; })
      ->first;
}

std::string bit_share_svg(const RunView& v) {
  const auto n = bit_share_target(v);
  if (!n) return "";
  std::map<int, std::map<std::string, const LayerView*>> grid;
  bool any = false;
  for (const LayerView& l : v.layers) {
    if (l.block < 0) continue;
    grid[l.block][l.linear] = &l;
    any = any || !l.bit_groups.empty();
  }
  if (!any) return "";
  std::vector<std::pair<std::string, std::string>> cols = llama_linears();
  std::set<std::string> known, extra;
  for (const auto& c : cols) known.insert(c.first);
  for (const auto& [b, row] : grid)
    for (const auto& [lin, l] : row)
      if (!known.count(lin)) extra.insert(lin);
  for (const auto& e : extra) cols.emplace_back(e, e);

  const double cw = 62, ch = 20, left = 64, top = 34, legend_w = 130;
  const double width = left + cw * static_cast<double>(cols.size()) + legend_w;
  const double height = std::max(top + ch * static_cast<double>(grid.size()) + 10, top + 110);
  SvgWriter s(width, height, fmt::format("share of groups at {}, {} and {} bits per layer", *n - 1, *n, *n + 1));
  for (size_t c = 0; c < cols.size(); ++c)
    s.text(left + cw * (static_cast<double>(c) + 0.5), top - 10, cols[c].second, "middle", 12, "col");
  struct Part {
    const char* cls;
    const char* fill;
    std::string label;
  };
  const Part parts[4] = {{"bits-lower", "#3b6fb6", fmt::format("{} bits", *n - 1)},
                         {"bits-at", "#b9c8b0", fmt::format("{} bits", *n)},
                         {"bits-higher", "#e0782c", fmt::format("{} bits", *n + 1)},
                         {"bits-other", "#8a4fa3", "other widths"}};
  double y = top;
  for (const auto& [block, row] : grid) {
    s.text(left - 8, y + ch * 0.7, fmt::format("block {}", block), "end", 11);
    for (size_t c = 0; c < cols.size(); ++c) {
      auto it = row.find(cols[c].first);
      if (it == row.end()) continue;
      const LayerView& l = *it->second;
      const double x0 = left + cw * static_cast<double>(c) + 1, w = cw - 2;
      const BitShare b = bit_share(l, *n);
      if (b.groups == 0) {
        s.rect(x0, y + 1, w, ch - 2, "#d8d8d8", "bits-cell nodata", l.name + ": no bit map");
        continue;
      }
      const double share[4] = {b.lower, b.at, b.higher, b.other};
      const std::string tip =
          fmt::format("{}: {} groups; {} bits {:.1f}%, {} bits {:.1f}%, {} bits {:.1f}%{}", l.name, b.groups, *n - 1,
                      100 * b.lower, *n, 100 * b.at, *n + 1, 100 * b.higher,
                      b.other > 0 ? fmt::format(", other {:.1f}%", 100 * b.other) : "");
      double x = x0;
      for (int p = 0; p < 4; ++p) {
        if (share[p] <= 0) continue;
        s.rect(x, y + 1, w * share[p], ch - 2, parts[p].fill, parts[p].cls, tip, share[p]);
        x += w * share[p];
      }
    }
    y += ch;
  }
  const double lx = left + cw * static_cast<double>(cols.size()) + 16;
  for (int p = 0; p < 4; ++p) {
    s.rect(lx, top + 22.0 * p, 14, 14, parts[p].fill);
    s.text(lx + 20, top + 22.0 * p + 11, parts[p].label, "start", 11);
  }
  return s.finish();
}

}  // namespace glvq
