#include "report/page.h"

#include "report/charts.h"
#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace glvq {
namespace {

// No '<' or '&' in here: the page must stay well-formed XML.
constexpr const char* kCss = R"(
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
p.note { color: #666; font-size: 13px; }
svg text { font-family: sans-serif; fill: #222; }
svg text.on-dark { fill: #ffffff; }
footer { margin-top: 32px; color: #888; font-size: 12px; }
)";

std::string esc(const std::string& s) { return xml_escape(s); }

std::string page_head(const std::string& title) {
  return fmt::format("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
                     "<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n",
                     esc(title), kCss);
}

std::string page_foot(const std::string& source) {
  return fmt::format("<footer>glvq {} &#183; from {}</footer>\n</body>\n</html>\n", esc(GLVQ_GIT_COMMIT), esc(source));
}

// A table cell with a number: shown short, exact in data-v, and named by KEY (its path in report.json).
std::string num_cell(const std::optional<double>& v, const std::string& key = "", int sig = 5) {
  if (!v) return "<td class=\"num\">-</td>";
  const std::string k = key.empty() ? "" : fmt::format(" data-key=\"{}\"", esc(key));
  return fmt::format("<td class=\"num\"{} data-v=\"{}\">{}</td>", k, esc(num_exact(*v)), esc(num_short(*v, sig)));
}

std::string row(const std::string& label, const std::string& cell) {
  return fmt::format("<tr><th>{}</th>{}</tr>\n", esc(label), cell);
}
std::string text_cell(const std::string& s) { return "<td>" + esc(s) + "</td>"; }

// "codes 2 + lattice 0.0625 + bitmap 0.0039 + ...": the roles with bits, in the format's order.
std::string bits_overhead_text(const RunView& v) {
  std::string o;
  for (const char* role : {"codes", "lattice", "companding", "scales", "bitmap", "transform", "other"}) {
    const auto b = json_number(v.bits_breakdown, role);
    if (b && *b > 0) o += fmt::format("{}{} {}", o.empty() ? "" : " + ", role, num_short(*b, 4));
  }
  return o;
}

std::string summary_section(const RunView& v) {
  std::string o = "<h2>Summary</h2>\n<table class=\"summary\">\n";
  o += row("model", text_cell(v.model.empty() ? "-" : v.model));
  o += row("method", text_cell(v.method.empty() ? "-" : v.method));
  if (v.target_bits) o += row("quant.bits (N)", fmt::format("<td class=\"num\">{}</td>", *v.target_bits));
  o += row("bits per weight", num_cell(v.bits_per_weight, "bits_per_weight"));
  o += row("code bits per weight", num_cell(v.code_bits_per_weight, "code_bits_per_weight"));
  if (!bits_overhead_text(v).empty()) o += row("bits per weight by role", text_cell(bits_overhead_text(v)));
  o += row("bits per weight, whole model", num_cell(v.bits_per_weight_model, "bits_per_weight_model"));
  o += row("perplexity FP", num_cell(v.ppl_fp, "ppl_fp", 6));
  o += row("perplexity quantized", num_cell(v.ppl_quant, "ppl_quant", 6));
  if (v.ppl_fp && v.ppl_quant && *v.ppl_fp > 0)
    o += row("quantized / FP", num_cell(*v.ppl_quant / *v.ppl_fp, "", 5));
  o += row("KL(FP || quantized) mean", num_cell(v.kl_mean, "quality.kl_mean"));
  o += row("KL 99th percentile", num_cell(v.kl_p99, "quality.kl_p99"));
  o += row("top-1 agreement", num_cell(v.top1, "quality.top1"));
  if (v.report) {
    const nlohmann::json& r = *v.report;
    for (const char* k : {"eval_tokens", "eval_ctx", "eval_chunks", "ranks"})
      if (json_number(r, k)) o += row(k, num_cell(json_number(r, k), k, 12));
  }
  if (!v.git_commit.empty()) o += row("git commit", text_cell(v.git_commit));
  o += "</table>\n";
  if (!v.report) o += "<p class=\"note\">No report.json: perplexity, quality and timings are unknown.</p>\n";
  return o;
}

std::string timings_section(const RunView& v) {
  if (!v.report || !v.report->contains("timings_s") || !(*v.report)["timings_s"].is_object()) return "";
  const nlohmann::json& t = (*v.report)["timings_s"];
  std::string o = "<h2>Time per stage</h2>\n<table class=\"timings\">\n<tr><th>stage</th><th>seconds</th></tr>\n";
  for (const char* stage : {"plan", "calibrate", "learn", "gather", "validate", "total"})
    if (json_number(t, stage)) o += row(stage, num_cell(json_number(t, stage), std::string("timings_s.") + stage, 4));
  for (auto it = t.begin(); it != t.end(); ++it) {  // stages this page does not know by name
    static const std::vector<std::string> known = {"plan", "calibrate", "learn", "gather", "validate", "total"};
    if (std::find(known.begin(), known.end(), it.key()) == known.end() && it.value().is_number())
      o += row(it.key(), num_cell(it.value().get<double>(), "timings_s." + it.key(), 4));
  }
  return o + "</table>\n";
}

std::string ranks_section(const RunView& v) {
  if (!v.report || !v.report->contains("per_rank") || !(*v.report)["per_rank"].is_array()) return "";
  std::string o = "<h2>Ranks</h2>\n<table class=\"ranks\">\n<tr><th>rank</th><th>device</th><th>blocks</th>"
                  "<th>transport</th><th>peak RSS (MiB)</th><th>GPU memory peak (MiB)</th><th>comm wait s</th>"
                  "<th>bytes sent</th></tr>\n";
  const auto mib = [](std::optional<double> b) { return b ? std::optional<double>(*b / 1048576.0) : std::nullopt; };
  for (const auto& r : (*v.report)["per_rank"]) {
    if (!r.is_object()) continue;
    std::string blocks = "-";
    if (r.contains("blocks") && r["blocks"].is_array() && r["blocks"].size() == 2)
      blocks = fmt::format("[{}, {})", r["blocks"][0].dump(), r["blocks"][1].dump());
    o += "<tr>" + num_cell(json_number(r, "rank"), "", 6) +
         text_cell(r.contains("device") && r["device"].is_string() ? r["device"].get<std::string>() : "-") +
         text_cell(blocks) +
         text_cell(r.contains("transport") && r["transport"].is_string() ? r["transport"].get<std::string>() : "-") +
         num_cell(mib(json_number(r, "peak_rss_bytes")), "", 5) +
         num_cell(mib(json_number(r, "gpu_memory_used_peak_bytes")), "", 5) +
         num_cell(json_number(r, "comm_wait_s"), "", 4) + num_cell(json_number(r, "comm_bytes_sent"), "", 6) +
         "</tr>\n";
  }
  return o + "</table>\n";
}

std::string heatmap_section(const RunView& v) {
  std::string o = "<h2>Layer loss</h2>\n";
  const HeatMetric m = heatmap_metric(v);
  const std::string svg = loss_heatmap_svg(v);
  if (svg.empty()) return o + "<p class=\"note\">No per-layer losses (no quantized layers in this run).</p>\n";
  if (m == HeatMetric::kRelativeLoss)
    o += "<p class=\"note\">Relative loss tr(E H E<sup>T</sup>) / tr(W H W<sup>T</sup>) of each linear on the "
         "calibration inputs (E = W - W<sub>quantized</sub>), colour on a log scale; darker is worse.</p>\n";
  else
    o += "<p class=\"note\">Absolute loss tr(E H E<sup>T</sup>) from the checkpoint, colour on a log scale: the "
         "relative loss needs the run's report.json (beside the checkpoint, or --report).</p>\n";
  return o + "<div class=\"chart\" id=\"loss-heatmap\">\n" + svg + "</div>\n";
}

std::string bits_section(const RunView& v) {
  std::string o = "<h2>Bit widths</h2>\n";
  const std::string svg = bit_share_svg(v);
  if (svg.empty())
    return o + "<p class=\"note\">No per-group bit widths: they come from the checkpoint (glvq-inspect --html "
               "on model.glvq.h5, or the worker's report.html).</p>\n";
  const int n = *bit_share_target(v);
  o += fmt::format("<p class=\"note\">Share of each layer's groups stored at {}, {} and {} bits per weight (N = {}). "
                   "GLVQ's bit allocation moves groups between widths; RTN and GPTQ keep every group at N.</p>\n",
                   n - 1, n, n + 1, n);
  return o + "<div class=\"chart\" id=\"bit-map\">\n" + svg + "</div>\n";
}

std::string curves_section() {
  return "<h2>Learning curves</h2>\n<p class=\"note\">Not recorded: checkpoints and report.json keep each layer's "
         "loss before and after learning (the per-layer table), not the loss at every step.</p>\n";
}

std::string layers_section(const RunView& v) {
  if (v.layers.empty()) return "";
  const auto n = bit_share_target(v);
  std::string o = fmt::format("<h2>Layers</h2>\n<details open=\"open\"><summary>{} layers</summary>\n"
                              "<table class=\"layers\">\n<tr><th>layer</th><th>shape</th><th>method</th>"
                              "<th>bits</th><th>code bits</th><th>rel. loss start</th><th>rel. loss</th>"
                              "<th>loss</th><th>learn s</th>",
                              v.layers.size());
  if (n) o += fmt::format("<th>{} / {} / {} bits</th>", *n - 1, *n, *n + 1);
  o += "</tr>\n";
  for (const LayerView& l : v.layers) {
    o += "<tr>" + text_cell(l.name) +
         text_cell(l.out > 0 ? fmt::format("{} x {}", l.out, l.in) : std::string("-")) + text_cell(l.method) +
         num_cell(l.bits, "", 5) + num_cell(l.code_bits, "", 5) +
         num_cell(l.rel_loss_init, "", 4) +
         num_cell(l.rel_loss, l.rel_loss ? "layer_losses." + l.name + ".rel_loss" : "", 4) + num_cell(l.loss, "", 4) +
         num_cell(l.seconds, "", 3);
    if (n) {
      const BitShare b = bit_share(l, *n);
      o += b.groups ? text_cell(fmt::format("{:.1f}% / {:.1f}% / {:.1f}%", 100 * b.lower, 100 * b.at, 100 * b.higher))
                    : text_cell("-");
    }
    o += "</tr>\n";
  }
  return o + "</table>\n</details>\n";
}

std::string opt_csv(const std::optional<double>& v) { return v ? num_exact(*v) : ""; }

}  // namespace

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string run_page_html(const RunView& v) {
  std::string o = page_head("glvq report: " + v.title);
  o += "<h1>glvq report: " + esc(v.title) + "</h1>\n";
  o += summary_section(v) + timings_section(v) + ranks_section(v) + heatmap_section(v) + bits_section(v) +
       curves_section() + layers_section(v);
  return o + page_foot(v.source);
}

std::string layers_csv(const RunView& v) {
  const auto n = bit_share_target(v);
  std::string o = "name,block,linear,out,in,method,bits_per_weight,code_bits_per_weight,rel_loss_init,rel_loss,"
                  "loss_init,loss,seconds,groups,groups_n_minus_1,groups_n,groups_n_plus_1,groups_other\n";
  for (const LayerView& l : v.layers) {
    int64_t c[4] = {0, 0, 0, 0}, groups = 0;
    for (const auto& [b, k] : l.bit_groups) {
      groups += k;
      const int d = n ? b - *n : 99;
      c[d == -1 ? 0 : d == 0 ? 1 : d == 1 ? 2 : 3] += k;
    }
    const auto count = [&](int i) { return l.bit_groups.empty() ? std::string() : std::to_string(c[i]); };
    o += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(l.name),
                     l.block >= 0 ? std::to_string(l.block) : "", csv_field(l.linear),
                     l.out > 0 ? std::to_string(l.out) : "", l.in > 0 ? std::to_string(l.in) : "",
                     csv_field(l.method), opt_csv(l.bits), opt_csv(l.code_bits), opt_csv(l.rel_loss_init),
                     opt_csv(l.rel_loss), opt_csv(l.loss_init), opt_csv(l.loss), opt_csv(l.seconds),
                     l.bit_groups.empty() ? "" : std::to_string(groups), count(0), count(1), count(2), count(3));
  }
  return o;
}

std::string compare_table(const std::vector<RunView>& runs, bool markdown) {
  const std::vector<std::string> head = {"run",     "method", "bits", "bits/weight", "code bits", "ppl FP",
                                         "ppl quant", "ratio", "KL mean", "top-1",     "total s"};
  std::vector<std::vector<std::string>> rows;
  const auto f = [](const std::optional<double>& v, int sig) { return v ? num_short(*v, sig) : std::string("-"); };
  for (const RunView& r : runs) {
    std::optional<double> ratio, total;
    if (r.ppl_fp && r.ppl_quant && *r.ppl_fp > 0) ratio = *r.ppl_quant / *r.ppl_fp;
    if (r.report && r.report->contains("timings_s")) total = json_number((*r.report)["timings_s"], "total");
    rows.push_back({r.title, r.method.empty() ? "-" : r.method,
                    r.target_bits ? std::to_string(*r.target_bits) : "-", f(r.bits_per_weight, 5),
                    f(r.code_bits_per_weight, 5), f(r.ppl_fp, 6), f(r.ppl_quant, 6), f(ratio, 5), f(r.kl_mean, 4),
                    f(r.top1, 4), f(total, 4)});
  }
  std::vector<size_t> w(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    w[c] = head[c].size();
    for (const auto& r : rows) w[c] = std::max(w[c], r[c].size());
  }
  std::string o;
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string s = markdown ? "|" : "";
    for (size_t c = 0; c < cells.size(); ++c) {
      // Markdown cells keep their text; '|' inside one would end the cell.
      std::string cell = cells[c];
      if (markdown) {
        std::string e;
        for (char ch : cell) e += ch == '|' ? std::string("\\|") : std::string(1, ch);
        cell = e;
      }
      const std::string pad(w[c] > cells[c].size() ? w[c] - cells[c].size() : 0, ' ');
      const std::string padded = c == 0 || c == 1 ? cell + pad : pad + cell;
      s += markdown ? " " + padded + " |" : (c ? "  " : "") + padded;
    }
    return s + "\n";
  };
  o += line(head);
  if (markdown) {
    std::string s = "|";
    for (size_t c = 0; c < head.size(); ++c) s += (c < 2 ? std::string(" :") : std::string(" ")) +
                                                  std::string(std::max<size_t>(w[c], 3) - 1, '-') +
                                                  (c < 2 ? " |" : ": |");
    o += s + "\n";
  }
  for (const auto& r : rows) o += line(r);
  return o;
}

std::string compare_page_html(const std::vector<RunView>& runs) {
  std::string o = page_head("glvq runs compared");
  o += "<h1>glvq runs compared</h1>\n<h2>Runs</h2>\n<table class=\"compare\">\n<tr><th>run</th><th>method</th>"
       "<th>N</th><th>bits/weight</th><th>code bits</th><th>ppl FP</th><th>ppl quantized</th><th>KL mean</th>"
       "<th>top-1</th><th>total s</th></tr>\n";
  std::string sources;
  for (const RunView& r : runs) {
    std::optional<double> total;
    if (r.report && r.report->contains("timings_s")) total = json_number((*r.report)["timings_s"], "total");
    o += "<tr>" + text_cell(r.title) + text_cell(r.method) +
         (r.target_bits ? fmt::format("<td class=\"num\">{}</td>", *r.target_bits) : text_cell("-")) +
         num_cell(r.bits_per_weight, "bits_per_weight") + num_cell(r.code_bits_per_weight, "code_bits_per_weight") +
         num_cell(r.ppl_fp, "ppl_fp", 6) + num_cell(r.ppl_quant, "ppl_quant", 6) +
         num_cell(r.kl_mean, "quality.kl_mean") + num_cell(r.top1, "quality.top1") +
         num_cell(total, "timings_s.total", 4) + "</tr>\n";
    sources += (sources.empty() ? "" : ", ") + r.source;
  }
  o += "</table>\n<h2>Perplexity against bits per weight</h2>\n";
  const std::string svg = ppl_bits_svg(runs);
  if (svg.empty()) o += "<p class=\"note\">No run has both a quantized perplexity and bits per weight.</p>\n";
  else o += "<p class=\"note\">Dashed: the full-precision perplexity.</p>\n<div class=\"chart\" id=\"ppl-bits\">\n" +
            svg + "</div>\n";
  return o + page_foot(sources);
}

}  // namespace glvq
