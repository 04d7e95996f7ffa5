#pragma once
/// The report pages and tables built from RunView (report/run_view.h):
///   run_page_html     one run: summary, timings, ranks, loss heatmap, bit map, per-layer table
///   compare_page_html several runs: the comparison table and the ppl-vs-bits chart
///   layers_csv        one run's per-layer rows for spreadsheets
///   compare_table     several runs as a markdown or plain-text table
/// Pages are self-contained (inline CSS and SVG, no script, nothing fetched) and
/// well-formed XML as well as HTML. Every number a page shows that comes from
/// report.json carries data-key (its JSON path) and data-v (its exact value).
#include "report/run_view.h"

#include <string>
#include <vector>

namespace glvq {

std::string run_page_html(const RunView& v);
std::string compare_page_html(const std::vector<RunView>& runs);

/// Header: name,block,linear,out,in,method,bits_per_weight,code_bits_per_weight,rel_loss_init,
/// rel_loss,loss_init,loss,seconds,groups,groups_n_minus_1,groups_n,groups_n_plus_1,groups_other.
/// Numbers round-trip exactly; unknown values are empty fields.
std::string layers_csv(const RunView& v);

/// One row per run: run, method, bits, bits_per_weight, code bits, ppl_fp, ppl_quant, ratio,
/// kl_mean, top1, total s. MARKDOWN: a GitHub table; else aligned plain text.
std::string compare_table(const std::vector<RunView>& runs, bool markdown);

/// CSV field: quoted (with "" for ") when it holds a comma, quote, CR or LF.
std::string csv_field(const std::string& s);

}  // namespace glvq
