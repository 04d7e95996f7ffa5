// glvq-compare: several runs side by side, from their report.json files: a table
// (markdown or plain text) and perplexity against bits per weight as SVG or HTML.
#include "common/error.h"
#include "common/fs_util.h"
#include "report/charts.h"
#include "report/page.h"
#include "report/run_view.h"
#include "tool_run.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  std::string html_out, svg_out, format = "markdown";
  CLI::App app{fmt::format(
      "glvq-compare {}: compare finished runs (directories holding report.json): prints a table of\n"
      "method, bits, bits per weight, perplexity (FP and quantized), KL, top-1 and time per run, and\n"
      "writes perplexity against bits per weight with the FP perplexity line (--svg, or --html with\n"
      "the table). Exit codes: 0 ok, 1 a run directory without a valid report.json, 2 bad command line.",
      GLVQ_GIT_COMMIT)};
  app.add_option("RUN", dirs, "run directories (output_dir of glvq-worker)")->required();
  app.add_option("--html", html_out, "write a self-contained HTML page (table + chart)");
  app.add_option("--svg", svg_out, "write the chart alone as an SVG file");
  app.add_option("--format", format, "table format on stdout")->check(CLI::IsMember({"markdown", "plain", "none"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  return glvq::run_tool("glvq-compare", dirs.front(), [&]() {
    std::vector<glvq::RunView> runs;
    for (const auto& d : dirs) runs.push_back(glvq::load_run_dir(d));
    // Perplexities compare only over the same model and evaluation text, context and chunks.
    const auto eval_of = [](const glvq::RunView& r) {
      const nlohmann::json& j = *r.report;
      nlohmann::json e = {{"model", j.value("model", "")}};
      for (const char* k : {"eval_ctx", "eval_chunks", "eval_tokens"}) e[k] = j.contains(k) ? j[k] : nullptr;
      return e;
    };
    for (size_t i = 1; i < runs.size(); ++i)
      if (eval_of(runs[i]) != eval_of(runs[0]))
        std::fprintf(stderr, "glvq-compare: warning: %s and %s were evaluated differently (%s vs %s): their "
                     "perplexities are not comparable\n", runs[0].source.c_str(), runs[i].source.c_str(),
                     eval_of(runs[0]).dump().c_str(), eval_of(runs[i]).dump().c_str());
    // Everything is built before anything is written.
    const std::string svg = svg_out.empty() ? "" : glvq::ppl_bits_svg(runs);
    GLVQ_CHECK(svg_out.empty() || !svg.empty(),
               "{}: no run has both ppl_quant and bits_per_weight, so there is nothing to plot", svg_out);
    const std::string html = html_out.empty() ? "" : glvq::compare_page_html(runs);
    if (!svg.empty()) glvq::write_file_atomic(svg_out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + svg);
    if (!html.empty()) glvq::write_file_atomic(html_out, html);
    if (format != "none") std::cout << glvq::compare_table(runs, format == "markdown");
    return 0;
  });
}
