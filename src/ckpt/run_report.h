#pragma once
/// A run's report page inputs from its files: a checkpoint (model.glvq.h5, read
/// through ckpt/inspect.h) and the run's report.json (report/run_view.h). Used by
/// glvq-inspect --html/--csv and by the worker, which writes report.html after
/// report.json.
#include "report/run_view.h"

#include <nlohmann/json.hpp>

#include <string>

namespace glvq {

struct CheckpointViewOptions {
  /// report.json to take perplexities and relative losses from: "" = the one beside
  /// the checkpoint if it exists (and describes it), "-" = none.
  std::string report_path;
  /// Verify every array's checksum (glvq-inspect); false reads only headers and bit
  /// maps (the worker, which has just written and read the checkpoint).
  bool read_arrays = true;
};

/// The view of checkpoint (or block file) PATH. An explicit report that does not
/// describe the checkpoint (other method or bits per weight) is an error naming
/// both files; the automatic one is then left out with a warning on stderr.
RunView checkpoint_run_view(const std::string& path, const CheckpointViewOptions& opt = {});
/// The same from SUMMARY, PATH's inspect_file() result (options' read_arrays unused).
RunView checkpoint_run_view(const std::string& path, const nlohmann::json& summary,
                            const CheckpointViewOptions& opt = {});

/// Writes OUTPUT_DIR/report.html (temp file + rename) from REPORT and, when the run
/// quantized, OUTPUT_DIR/model.glvq.h5. Throws glvq::Error naming the file on failure.
void write_run_report_html(const std::string& output_dir, const nlohmann::json& report);

}  // namespace glvq
