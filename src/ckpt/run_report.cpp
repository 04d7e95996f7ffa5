#include "ckpt/run_report.h"

#include "ckpt/inspect.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "report/page.h"

#include <cmath>
#include <cstdio>

namespace glvq {
namespace {

std::string dir_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Why REPORT does not describe the checkpoint summarised in SUMMARY ("" when it does).
std::string report_mismatch(const nlohmann::json& report, const nlohmann::json& summary) {
  if (summary.value("kind", "") != "checkpoint") return "";  // a block file: nothing to compare
  const nlohmann::json& root = summary["root"];
  const std::string rm = report.value("method", ""), cm = root.value("method", "");
  if (!rm.empty() && rm != cm) return fmt::format("it is for method {}, the checkpoint for {}", rm, cm);
  const auto rb = json_number(report, "bits_per_weight"), cb = json_number(root, "bits_per_weight");
  if (rb && cb && std::abs(*rb - *cb) > 1e-9 * std::max(1.0, std::abs(*cb)))
    return fmt::format("it reports {} bits per weight, the checkpoint has {}", *rb, *cb);
  return "";
}

}  // namespace

RunView checkpoint_run_view(const std::string& path, const CheckpointViewOptions& opt) {
  InspectOptions io;
  io.conditioning = false;
  io.read_arrays = opt.read_arrays;
  return checkpoint_run_view(path, inspect_file(path, io), opt);
}

RunView checkpoint_run_view(const std::string& path, const nlohmann::json& summary,
                            const CheckpointViewOptions& opt) {
  std::optional<nlohmann::json> report;
  std::string source = path;
  if (opt.report_path != "-") {
    const bool automatic = opt.report_path.empty();
    const std::string rp = automatic ? dir_of(path) + "/report.json" : opt.report_path;
    if (!automatic || file_exists(rp)) {
      nlohmann::json r = read_report_json(rp);
      const std::string why = report_mismatch(r, summary);
      GLVQ_CHECK(why.empty() || automatic, "{} does not describe {}: {}", rp, path, why);
      if (why.empty()) {
        report = std::move(r);
        source += ", " + rp;
      } else {
        std::fprintf(stderr, "warning: leaving out %s, which does not describe %s: %s\n", rp.c_str(), path.c_str(),
                     why.c_str());
      }
    }
  }
  const std::string dir = dir_of(path);
  return make_run_view(report, summary, dir == "." ? path : dir, source);
}

void write_run_report_html(const std::string& output_dir, const nlohmann::json& report) {
  const std::string ckpt = output_dir + "/model.glvq.h5";
  RunView v;
  if (report.value("method", "") != "none" && file_exists(ckpt)) {
    CheckpointViewOptions opt;
    opt.report_path = "-";
    opt.read_arrays = false;
    v = checkpoint_run_view(ckpt, opt);
    v = make_run_view(report, v.inspect, output_dir, output_dir + "/report.json, " + ckpt);
  } else {
    v = make_run_view(report, std::nullopt, output_dir, output_dir + "/report.json");
  }
  write_file_atomic(output_dir + "/report.html", run_page_html(v));
}

}  // namespace glvq
