#include "ckpt/layer_io.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace glvq {
namespace {

const std::set<std::string>& reserved_attrs() {
  static const std::set<std::string> names = {"tensor_name", "method", "out",     "in",
                                              "loss",        "loss_init", "seconds", "arrays"};
  return names;
}

}  // namespace

bool is_reserved_layer_attr(const std::string& name) { return reserved_attrs().count(name) != 0; }

LayerPath layer_path_of(const std::string& tensor_name) {
  static const std::string prefix = "model.layers.", suffix = ".weight";
  auto bad = [&]() {
    GLVQ_FAIL("tensor '{}' is not a decoder-layer weight \"model.layers.<block>.<linear>.weight\"; only those "
              "can be stored as quantized layers", tensor_name);
  };
  if (tensor_name.rfind(prefix, 0) != 0 || tensor_name.size() <= prefix.size() + suffix.size() ||
      tensor_name.compare(tensor_name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    bad();
  }
  const std::string mid = tensor_name.substr(prefix.size(), tensor_name.size() - prefix.size() - suffix.size());
  const size_t dot = mid.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 >= mid.size() || dot > 9) bad();
  for (size_t i = 0; i < dot; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(mid[i]))) bad();
  }
  LayerPath p;
  p.block = std::stoi(mid.substr(0, dot));
  p.linear = mid.substr(dot + 1);
  if (p.linear.find('/') != std::string::npos || std::to_string(p.block) != mid.substr(0, dot)) bad();
  return p;
}

std::string layer_tensor_name(int block, const std::string& linear) {
  return "model.layers." + std::to_string(block) + "." + linear + ".weight";
}

int64_t check_file_format(hid_t file, const std::string& path, const std::string& format, int64_t version,
                          const std::string& what) {
  GLVQ_CHECK(h5_has_attr(file, "format"),
             "{} is an HDF5 file but not a glvq {} (it has no root attribute 'format'; expected \"{}\")", path,
             what, format);
  const std::string found = h5_get_attr_string(file, "format", path + ": root");
  if (found != format) {
    const char* kind = found == "glvq" ? "a glvq checkpoint" : found == "glvq-block" ? "a glvq block file" : nullptr;
    if (kind) GLVQ_FAIL("{} is {} (format \"{}\"), not a glvq {}", path, kind, found, what);
    GLVQ_FAIL("{} has format \"{}\": it is not a glvq {} (format \"{}\")", path, found, what, format);
  }
  const int64_t v = h5_get_attr_int(file, "format_version", path + ": root");
  GLVQ_CHECK(v <= version, "{} has format_version {}: it was written by a newer glvq; this build reads {} "
             "version {}", path, v, what, version);
  GLVQ_CHECK(v >= 1, "{} has format_version {}, which this build does not read ({} versions 1 to {})", path, v,
             what, version);
  return v;
}

int64_t layer_format_version(const QuantizedLinear& q) {
  const auto it = q.attrs.find("group_size");
  if (it == q.attrs.end() || !(it->second > 0)) return 1;
  return q.in % static_cast<int64_t>(it->second) != 0 ? 2 : 1;
}

H5Compression layer_array_compression(const std::string& array_name, size_t nbytes) {
  H5Compression c;
  const std::string role = bits_role(array_name);
  // Measured on RTN layers: zero points shrink ~10x, fp16 scales ~30%; below ~1 KiB the chunk
  // index costs about what deflate saves. Packed codes and random sign bits do not shrink.
  c.deflate = nbytes >= 1024 && role != "codes" && role != "transform";
  return c;
}

void write_layer_group(hid_t parent, const std::string& tensor_name, const QuantizedLinear& q,
                       const std::string& file) {
  const LayerPath p = layer_path_of(tensor_name);
  const std::string where = fmt::format("{}: layer {}", file, tensor_name);
  GLVQ_CHECK(!q.method.empty() && q.out > 0 && q.in > 0, "{}: method \"{}\" and shape [{}, {}] are not a stored "
             "layer", where, q.method, q.out, q.in);
  H5Handle g = h5_create_group(parent, p.linear, where);
  nlohmann::json names = nlohmann::json::array();
  for (const auto& [name, t] : q.arrays) {
    h5_write_tensor(g.id(), name, t, layer_array_compression(name, t.numel() * t.element_size()),
                    fmt::format("{}, array '{}'", where, name));
    names.push_back(name);
  }
  h5_set_attr(g.id(), "tensor_name", tensor_name);
  h5_set_attr(g.id(), "method", q.method);
  h5_set_attr(g.id(), "out", static_cast<int64_t>(q.out));
  h5_set_attr(g.id(), "in", static_cast<int64_t>(q.in));
  h5_set_attr(g.id(), "loss", q.loss);
  h5_set_attr(g.id(), "loss_init", q.loss_init);
  h5_set_attr(g.id(), "seconds", q.seconds);
  h5_set_attr_json(g.id(), "arrays", names);
  for (const auto& [name, v] : q.attrs) {
    GLVQ_CHECK(!is_reserved_layer_attr(name) && !name.empty(),
               "{}: the quantizer attribute '{}' clashes with a layer attribute of the format", where, name);
    h5_set_attr(g.id(), name, v);
  }
}

std::string read_layer_tensor_name(hid_t group, const std::string& where) {
  return h5_get_attr_string(group, "tensor_name", where);
}

QuantizedLinear read_layer_header(hid_t group, const std::string& where) {
  QuantizedLinear q;
  q.method = h5_get_attr_string(group, "method", where);
  q.out = h5_get_attr_int(group, "out", where);
  q.in = h5_get_attr_int(group, "in", where);
  GLVQ_CHECK(q.out > 0 && q.in > 0, "{}: shape [{}, {}] is invalid", where, q.out, q.in);
  q.loss = h5_get_attr_double(group, "loss", where);
  q.loss_init = h5_get_attr_double(group, "loss_init", where);
  q.seconds = h5_get_attr_double(group, "seconds", where);
  for (const std::string& a : h5_attr_names(group)) {
    if (!is_reserved_layer_attr(a)) q.attrs[a] = h5_get_attr_double(group, a, where);
  }
  return q;
}

QuantizedLinear read_layer_group(hid_t group, const std::string& where) {
  QuantizedLinear q = read_layer_header(group, where);
  const nlohmann::json names = h5_get_attr_json(group, "arrays", where);
  GLVQ_CHECK(names.is_array(), "{}: attribute 'arrays' is not a JSON list", where);
  std::set<std::string> listed;
  for (const auto& n : names) {
    GLVQ_CHECK(n.is_string(), "{}: attribute 'arrays' lists a non-name {}", where, n.dump());
    const std::string name = n.get<std::string>();
    GLVQ_CHECK(h5_exists(group, name), "{}: array '{}' is missing (the file is incomplete)", where, name);
    q.arrays[name] = h5_read_tensor(group, name, fmt::format("{}/{}", where, name));
    listed.insert(name);
  }
  for (const std::string& child : h5_children(group, where)) {
    GLVQ_CHECK(listed.count(child), "{}: '{}' is not one of the layer's arrays {}", where, child, names.dump());
  }
  return q;
}

}  // namespace glvq
