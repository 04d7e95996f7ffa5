#pragma once
/// The report's charts as inline SVG (report/svg.h writes the elements):
///   loss_heatmap_svg  blocks x {q, k, v, o, gate, up, down}, cell colour = relative layer loss (log scale)
///   bit_share_svg     the same grid, each cell a bar of the layer's groups at N-1 / N / N+1 bits
///   ppl_bits_svg      perplexity against bits per weight for several runs, with the FP perplexity line
/// Each returns "" when it has nothing to draw (the page then says why).
#include "report/run_view.h"

#include <optional>
#include <string>
#include <vector>

namespace glvq {

/// Which number the heatmap colours: rel_loss (tr(E H E^T) / tr(W H W^T), from report.json)
/// when any layer has it, else the absolute loss of the checkpoint.
enum class HeatMetric { kRelativeLoss, kLoss, kNone };
HeatMetric heatmap_metric(const RunView& v);
std::optional<double> heatmap_value(const LayerView& l, HeatMetric m);

std::string loss_heatmap_svg(const RunView& v);

/// Shares of a layer's groups by bit width around N (fractions of all groups; they sum
/// to 1 when groups > 0). OTHER counts widths outside N-1..N+1.
struct BitShare {
  double lower = 0, at = 0, higher = 0, other = 0;
  int64_t groups = 0;
};
BitShare bit_share(const LayerView& l, int n);
/// N for the bit map: quant.bits when known, else the most common width over all groups.
std::optional<int> bit_share_target(const RunView& v);

std::string bit_share_svg(const RunView& v);

/// One point per run with both a quantized perplexity and bits per weight; one
/// polyline per method (points by bits); a dashed line per distinct FP perplexity.
std::string ppl_bits_svg(const std::vector<RunView>& runs);

/// The y axis' ticks for [LO, HI]: 1, 2 or 5 x 10^k steps, 4 to 10 of them, covering the range.
std::vector<double> nice_ticks(double lo, double hi);

}  // namespace glvq
