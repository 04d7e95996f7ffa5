// glvq-inspect: per-layer summary of a glvq checkpoint (model.glvq.h5) or block file,
// as a table, JSON, CSV or a self-contained HTML report.
#include "ckpt/inspect.h"
#include "ckpt/run_report.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "report/page.h"
#include "tool_run.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  std::string file, html_out, csv_out, report_path;
  bool as_json = false, no_cond = false;
  CLI::App app{fmt::format(
      "glvq-inspect {}: summarise a glvq checkpoint (model.glvq.h5) or a block file (blocks/block-<k>.h5).\n"
      "Per layer: shape, method, bits per weight (every stored array counted), loss, loss_init and the\n"
      "conditioning of the generation matrices G (sigma_max / sigma_min: max and median over groups).\n"
      "Every dataset's checksum is verified on the way. --html writes a report page (summary, loss\n"
      "heatmap, bit-width map, per-layer table), --csv the per-layer table; both take perplexity and\n"
      "relative losses from the run's report.json beside the checkpoint (or --report).\n"
      "Exit codes: 0 ok, 1 unreadable/invalid file, 2 bad command line.",
      GLVQ_GIT_COMMIT)};
  app.add_option("FILE", file, "model.glvq.h5 or block-<k>.h5")->required();
  app.add_flag("--json", as_json, "print the summary as JSON (schema in docs/FORMAT.md)");
  app.add_flag("--no-cond", no_cond, "skip the G conditioning (one small SVD per group)");
  app.add_option("--html", html_out, "write the HTML report to this file (temp file + rename)");
  app.add_option("--csv", csv_out, "write the per-layer CSV to this file, or to stdout with - or no value")
      ->expected(0, 1);
  app.add_option("--report", report_path,
                 "report.json to read (default: the one beside FILE if present; - for none)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  const bool want_csv = app.count("--csv") > 0;
  if (want_csv && csv_out.empty()) csv_out = "-";
  if (want_csv && csv_out == "-" && as_json) {
    std::fprintf(stderr, "glvq-inspect: error: --csv - and --json both print to stdout; give --csv a file\n");
    return glvq::kExitUsage;
  }
  return glvq::run_tool("glvq-inspect", file, [&]() {
    glvq::InspectOptions opt;
    // The report and CSV do not show conditioning: its SVDs only when the JSON or the table does.
    opt.conditioning = !no_cond && (as_json || (html_out.empty() && !want_csv));
    const nlohmann::json s = glvq::inspect_file(file, opt);
    if (!html_out.empty() || want_csv) {
      glvq::CheckpointViewOptions vo;
      vo.report_path = report_path;
      const glvq::RunView v = glvq::checkpoint_run_view(file, s, vo);
      // Both outputs are built before either is written: a failure leaves neither half-made.
      const std::string html = html_out.empty() ? "" : glvq::run_page_html(v);
      const std::string csv = want_csv ? glvq::layers_csv(v) : "";
      if (!html_out.empty()) {
        glvq::write_file_atomic(html_out, html);
        std::fprintf(stderr, "glvq-inspect: wrote %s\n", html_out.c_str());
      }
      if (want_csv && csv_out != "-") {
        glvq::write_file_atomic(csv_out, csv);
        std::fprintf(stderr, "glvq-inspect: wrote %s\n", csv_out.c_str());
      }
      if (want_csv && csv_out == "-") std::cout << csv;
      if (as_json) std::cout << s.dump(2) << "\n";
      return 0;
    }
    if (as_json) {
      std::cout << s.dump(2) << "\n";
    } else {
      std::cout << glvq::inspect_text(s);
    }
    return 0;
  });
}
