#include "ckpt/inspect.h"

#include "ckpt/block_file.h"
#include "ckpt/checkpoint.h"
#include "ckpt/h5_util.h"
#include "ckpt/layer_io.h"

#include <sys/stat.h>

#include <cmath>
#include <limits>

namespace glvq {
namespace {

/// JSON has no Inf/NaN: those become null.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// Groups by bit width: GLVQ's bit map ("bits", uint8 [groups]) counted, or, for the
// integer-grid methods, every (row, group) at the layer's "bits" parameter.
nlohmann::json bit_groups(const QuantizedLinear& q, const at::Tensor* bitmap) {
  nlohmann::json j = nlohmann::json::object();
  if (bitmap && bitmap->defined()) {
    const at::Tensor b = bitmap->to(at::kLong).flatten();
    GLVQ_CHECK(b.numel() == 0 || b.min().item<int64_t>() >= 0, "bit map with negative widths");
    const at::Tensor counts = at::bincount(b);
    for (int64_t k = 0; k < counts.numel(); ++k)
      if (const int64_t c = counts[k].item<int64_t>()) j[std::to_string(k)] = c;
    return j;
  }
  const auto bits = q.attrs.find("bits"), gs = q.attrs.find("group_size");
  if (bits != q.attrs.end() && gs != q.attrs.end() && gs->second > 0) {
    const int64_t g = static_cast<int64_t>(gs->second);
    j[std::to_string(static_cast<int64_t>(bits->second))] = q.out * ((q.in + g - 1) / g);
  }
  return j;
}

// count_bits() from the stored arrays' sizes alone (read_arrays = false).
BitsBreakdown count_bits_of_sizes(const QuantizedLinear& q, const std::map<std::string, StoredTensorInfo>& arrays) {
  BitsBreakdown b;
  b.weights = q.out * q.in;
  const double n = static_cast<double>(b.weights);
  for (const auto& [name, info] : arrays) {
    const double bits = static_cast<double>(info.nbytes) * 8.0 / n;
    const std::string role = bits_role(name);
    if (role == "codes") b.codes += bits;
    else if (role == "lattice") b.lattice += bits;
    else if (role == "companding") b.companding += bits;
    else if (role == "scales") b.scales += bits;
    else if (role == "bitmap") b.bitmap += bits;
    else if (role == "transform") b.transform += bits;
    else b.other += bits;
  }
  return b;
}

nlohmann::json layer_summary(const std::string& name, const QuantizedLinear& q, const BitsBreakdown& bits,
                             const InspectOptions& opt) {
  nlohmann::json j;
  j["name"] = name;
  j["shape"] = {q.out, q.in};
  j["method"] = q.method;
  j["bits"] = bits_breakdown_json(bits);
  j["loss"] = num(q.loss);
  j["loss_init"] = num(q.loss_init);
  j["seconds"] = num(q.seconds);
  j["attrs"] = nlohmann::json::object();
  for (const auto& [k, v] : q.attrs) j["attrs"][k] = num(v);
  const auto bitmap = q.arrays.find("bits");
  j["bit_groups"] = bit_groups(q, bitmap == q.arrays.end() ? nullptr : &bitmap->second);
  if (opt.conditioning && opt.read_arrays) {
    for (const auto& [a, t] : q.arrays) {
      if (bits_role(a) == "lattice" && t.dim() >= 2 && t.size(-1) == t.size(-2) && t.numel() > 0) {
        j["g_cond"] = g_conditioning(t);
        break;
      }
    }
  }
  return j;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (std::abs(b) >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

std::string fmt_num(const nlohmann::json& v, const char* spec_fallback = "-") {
  if (!v.is_number()) return spec_fallback;
  return fmt::format("{:.4g}", v.get<double>());
}

}  // namespace

nlohmann::json g_conditioning(const at::Tensor& G) {
  const int64_t d = G.size(-1);
  const at::Tensor s = at::linalg_svdvals(G.reshape({-1, d, d}).to(at::kDouble));  // [groups, d], descending
  const at::Tensor smax = s.select(1, 0), smin = s.select(1, d - 1);
  const at::Tensor ok = smin > 0;
  const int64_t groups = s.size(0), regular = ok.sum().item<int64_t>();
  nlohmann::json j = {{"groups", groups}, {"singular", groups - regular}, {"max", nullptr}, {"median", nullptr}};
  if (regular > 0) {
    const at::Tensor ratio = smax.masked_select(ok) / smin.masked_select(ok);
    j["max"] = num(ratio.max().item<double>());
    j["median"] = num(ratio.median().item<double>());
  }
  return j;
}

nlohmann::json inspect_file(const std::string& path, const InspectOptions& opt) {
  std::string format;
  {
    H5Handle f = h5_open_read(path, "glvq file");
    GLVQ_CHECK(h5_has_attr(f.id(), "format"),
               "{} is an HDF5 file but not a glvq checkpoint or block file (it has no root attribute 'format')",
               path);
    format = h5_get_attr_string(f.id(), "format", path + ": root");
  }
  GLVQ_CHECK(format == kCheckpointFormat || format == kBlockFormat,
             "{} has format \"{}\": it is not a glvq checkpoint (\"glvq\") or block file (\"glvq-block\")", path,
             format);
  struct stat st;
  GLVQ_CHECK(::stat(path.c_str(), &st) == 0, "cannot stat {}", path);

  nlohmann::json out;
  out["file"] = path;
  out["file_bytes"] = static_cast<int64_t>(st.st_size);
  nlohmann::json layers = nlohmann::json::array(), tensors = nlohmann::json::array();
  BitsBreakdown bits;
  double loss = 0, loss_init = 0;
  int64_t unq_params = 0, unq_bytes = 0;

  if (format == kCheckpointFormat) {
    CheckpointReader ck(path);
    out["kind"] = "checkpoint";
    nlohmann::json root = ck.root_attrs();
    out["format_version"] = root.value("format_version", int64_t{0});
    out["root"] = {{"method", root.value("method", "")},
                   {"git_commit", root.value("git_commit", "")},
                   {"bits_per_weight", root.value("bits_per_weight", 0.0)},
                   {"bits_per_weight_model", root.value("bits_per_weight_model", 0.0)},
                   {"bits_breakdown", root.value("bits_breakdown", nlohmann::json::object())},
                   {"config", root.value("config", nlohmann::json::object())},
                   {"provenance_keys", nlohmann::json::array()}};
    if (root.contains("provenance") && root["provenance"].is_object()) {
      for (auto it = root["provenance"].begin(); it != root["provenance"].end(); ++it) {
        out["root"]["provenance_keys"].push_back(it.key());
      }
    }
    for (const std::string& n : ck.layer_names()) {
      const auto info = ck.layer_array_info(n);
      QuantizedLinear q;
      BitsBreakdown lb;
      if (opt.read_arrays) {
        q = ck.layer(n);
        lb = count_bits(q);
      } else {
        q = ck.layer_header(n);
        if (info.count("bits")) q.arrays["bits"] = ck.layer_array(n, "bits");
        lb = count_bits_of_sizes(q, info);
      }
      nlohmann::json j = layer_summary(n, q, lb, opt);
      size_t storage = 0;
      for (const auto& [a, ai] : info) storage += ai.storage_bytes;
      j["storage_bytes"] = storage;
      layers.push_back(j);
      bits += lb;
      loss += q.loss;
      loss_init += q.loss_init;
    }
    for (const std::string& n : ck.tensor_names()) {
      const StoredTensorInfo info = ck.tensor_info(n);
      tensors.push_back({{"name", n}, {"dtype", dtype_name(info.dtype)}, {"shape", info.shape},
                         {"bytes", info.nbytes}});
      int64_t p = 1;
      for (int64_t d : info.shape) p *= d;
      unq_params += p;
      unq_bytes += static_cast<int64_t>(info.nbytes);
    }
  } else {
    const BlockFile bf = read_block_file(path);
    out["kind"] = "block";
    out["format_version"] = bf.format_version;
    out["root"] = {{"block", bf.block}, {"provenance", bf.provenance}};
    for (const auto& [n, q] : bf.layers) {
      layers.push_back(layer_summary(n, q, count_bits(q), opt));
      bits += count_bits(q);
      loss += q.loss;
      loss_init += q.loss_init;
    }
  }
  const double ideal = bits.total() * static_cast<double>(bits.weights) / 8.0 + static_cast<double>(unq_bytes);
  out["layers"] = layers;
  out["tensors"] = tensors;
  out["totals"] = {{"layers", layers.size()},
                   {"weights", bits.weights},
                   {"bits", bits_breakdown_json(bits)},
                   {"loss", num(loss)},
                   {"loss_init", num(loss_init)},
                   {"unquantized_params", unq_params},
                   {"unquantized_bytes", unq_bytes},
                   {"ideal_bytes", ideal},
                   {"overhead_bytes", static_cast<double>(st.st_size) - ideal}};
  return out;
}

std::string inspect_text(const nlohmann::json& s) {
  std::string o;
  o += fmt::format("{}: glvq {} (format_version {}), {}\n", s["file"].get<std::string>(),
                   s["kind"].get<std::string>(), s["format_version"].get<int64_t>(),
                   human_bytes(s["file_bytes"].get<double>()));
  const nlohmann::json& r = s["root"];
  if (s["kind"] == "checkpoint") {
    o += fmt::format("method {}, bits_per_weight {:.4f} (whole model incl. unquantized tensors {:.4f}), git {}\n",
                     r["method"].get<std::string>(), r["bits_per_weight"].get<double>(),
                     r["bits_per_weight_model"].get<double>(), r["git_commit"].get<std::string>());
  } else {
    o += fmt::format("block {}, provenance {}\n", r["block"].get<int64_t>(),
                     r["provenance"].dump().substr(0, 200));
  }
  size_t w = 5;
  for (const auto& l : s["layers"]) w = std::max(w, l["name"].get<std::string>().size());
  o += fmt::format("{:<{}}  {:>13}  {:<6} {:>7} {:>11} {:>11} {:>10} {:>10}\n", "layer", w, "shape", "method",
                   "bits", "loss", "loss_init", "G cond max", "G cond med");
  for (const auto& l : s["layers"]) {
    const std::string shape = fmt::format("[{}, {}]", l["shape"][0].get<int64_t>(), l["shape"][1].get<int64_t>());
    std::string cmax = "-", cmed = "-";
    if (l.contains("g_cond")) {
      cmax = fmt_num(l["g_cond"]["max"], "inf");
      cmed = fmt_num(l["g_cond"]["median"], "inf");
      if (l["g_cond"]["singular"].get<int64_t>() > 0) cmax += fmt::format(" ({} sing.)", l["g_cond"]["singular"].get<int64_t>());
    }
    o += fmt::format("{:<{}}  {:>13}  {:<6} {:>7.4f} {:>11} {:>11} {:>10} {:>10}\n", l["name"].get<std::string>(), w,
                     shape, l["method"].get<std::string>(), l["bits"]["total"].get<double>(), fmt_num(l["loss"]),
                     fmt_num(l["loss_init"]), cmax, cmed);
  }
  const nlohmann::json& t = s["totals"];
  const nlohmann::json& b = t["bits"];
  o += fmt::format("totals: {} layers, {} quantized weights, {:.4f} bits/weight (codes {:.4f}, lattice {:.4f}, "
                   "companding {:.4f}, scales {:.4f}, bitmap {:.4f}, transform {:.4f}, other {:.4f}); loss {} "
                   "(init {})\n",
                   t["layers"].get<int64_t>(), t["weights"].get<int64_t>(), b["total"].get<double>(),
                   b["codes"].get<double>(), b["lattice"].get<double>(), b["companding"].get<double>(),
                   b["scales"].get<double>(), b["bitmap"].get<double>(), b["transform"].get<double>(),
                   b["other"].get<double>(), fmt_num(t["loss"]), fmt_num(t["loss_init"]));
  if (!s["tensors"].empty()) {
    o += fmt::format("unquantized: {} tensors, {} parameters, {}:", s["tensors"].size(),
                     t["unquantized_params"].get<int64_t>(), human_bytes(t["unquantized_bytes"].get<double>()));
    for (const auto& x : s["tensors"]) {
      o += fmt::format(" {} {}", x["name"].get<std::string>(), x["dtype"].get<std::string>());
    }
    o += "\n";
  }
  o += fmt::format("size: {} in the file, {} at exactly bits_per_weight plus unquantized tensors (overhead {})\n",
                   human_bytes(s["file_bytes"].get<double>()), human_bytes(t["ideal_bytes"].get<double>()),
                   human_bytes(t["overhead_bytes"].get<double>()));
  return o;
}

}  // namespace glvq
