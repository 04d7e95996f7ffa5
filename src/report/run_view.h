#pragma once
/// What a report page shows about one run, gathered from report.json (the
/// worker's summary: perplexities, quality, timings, ranks, per-layer relative
/// losses) and/or a checkpoint's inspect summary (ckpt/inspect.h: per-layer
/// shapes, bits, losses and per-group bit widths). Either source may be absent;
/// the page says what it lacks. No LibTorch here: glvq-compare and the tests
/// use this with JSON alone.
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace glvq {

struct LayerView {
  std::string name;            ///< tensor name, "model.layers.<b>.<linear>.weight"
  int block = -1;              ///< -1 when NAME is not a decoder-layer weight
  std::string linear;          ///< "self_attn.q_proj", ...
  int64_t out = 0, in = 0;
  std::string method;
  std::optional<double> bits, code_bits;              ///< per weight, every stored array / codes only
  std::optional<double> loss, loss_init, seconds;     ///< tr(E H E^T) after / before learning, wall s
  std::optional<double> rel_loss, rel_loss_init;      ///< the same over tr(W H W^T) (report.json)
  std::map<int, int64_t> bit_groups;                  ///< bits -> number of groups (empty: unknown)
};

struct RunView {
  std::string title;   ///< the run's name on the page (output_dir, or the file)
  std::string source;  ///< the files it was read from, for the page's footer
  std::optional<nlohmann::json> report;   ///< report.json as read
  std::optional<nlohmann::json> inspect;  ///< the checkpoint's inspect summary
  std::string model, method, git_commit;
  std::optional<int> target_bits;  ///< quant.bits: the page's "N" of N-1 / N / N+1
  std::optional<double> bits_per_weight, code_bits_per_weight, bits_per_weight_model;
  nlohmann::json bits_breakdown = nlohmann::json::object();  ///< bits per weight by role (codes, scales, ...)
  std::optional<double> ppl_fp, ppl_quant, kl_mean, kl_p99, top1;
  std::vector<LayerView> layers;  ///< checkpoint order (block, then linear name), or report.json's
};

/// The seven linears of a Llama block in the order of the heatmap's columns,
/// with their short column labels (q, k, v, o, gate, up, down).
const std::vector<std::pair<std::string, std::string>>& llama_linears();

/// Builds the view from REPORT (report.json) and/or INSPECT (inspect_file's
/// JSON); at least one must be given. When both are, the layers are the
/// checkpoint's, completed by the report's relative losses. Throws glvq::Error
/// naming WHERE when a present source lacks the keys it must have.
RunView make_run_view(const std::optional<nlohmann::json>& report, const std::optional<nlohmann::json>& inspect,
                      const std::string& title, const std::string& source);

/// PATH (a run's report.json) parsed; throws glvq::Error naming PATH when it is
/// missing ("no report.json: the run has not finished validate ..."), unreadable,
/// not JSON or not a JSON object.
nlohmann::json read_report_json(const std::string& path);

/// A run directory for glvq-compare: DIR/report.json (required), titled by DIR's name.
RunView load_run_dir(const std::string& dir);

/// The value of KEY in J as a number; nullopt when absent, null or not a number.
std::optional<double> json_number(const nlohmann::json& j, const std::string& key);

}  // namespace glvq
