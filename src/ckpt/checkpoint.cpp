#include "ckpt/checkpoint.h"

#include "ckpt/h5_util.h"
#include "ckpt/layer_io.h"
#include "common/fs_util.h"

#include <unistd.h>

#include <algorithm>
#include <set>

namespace glvq {
namespace {

constexpr const char* kWhat = "checkpoint";

const std::set<std::string>& json_root_attrs() {
  static const std::set<std::string> names = {"model_config", "config", "bits_breakdown", "layer_losses",
                                              "provenance"};
  return names;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

StoredTensorInfo to_stored(const H5DatasetInfo& i) {
  StoredTensorInfo s;
  s.dtype = i.dtype;
  s.shape = i.shape;
  s.nbytes = i.nbytes();
  s.storage_bytes = i.storage_bytes;
  return s;
}

}  // namespace

nlohmann::json bits_breakdown_json(const BitsBreakdown& b) {
  return {{"codes", b.codes},   {"lattice", b.lattice},     {"companding", b.companding},
          {"scales", b.scales}, {"bitmap", b.bitmap},       {"transform", b.transform},
          {"other", b.other},   {"total", b.total()},       {"weights", b.weights}};
}

// ---------------------------------------------------------------- writer

struct CheckpointWriter::Impl {
  std::string path, tmp;
  H5Handle file, layers, tensors;
  std::map<int, H5Handle> blocks;
  std::set<std::string> names;
  BitsBreakdown bits;
  nlohmann::json losses = nlohmann::json::object();
  int64_t layer_count = 0, tensor_count = 0;
  int64_t format_version = 1;  ///< the largest layer_format_version of the layers
  double unquantized_bits = 0;
  int64_t unquantized_params = 0;
  bool finished = false;

  void claim(const std::string& name) {
    GLVQ_CHECK(names.insert(name).second, "cannot write checkpoint {}: tensor {} was added twice", path, name);
  }
  void close_all() {
    blocks.clear();
    layers.reset();
    tensors.reset();
    file.reset();
  }
};

CheckpointWriter::CheckpointWriter(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  try {
    m.file = h5_create(m.tmp);
    m.layers = h5_create_group(m.file.id(), "layers", path);
    m.tensors = h5_create_group(m.file.id(), "tensors", path);
  } catch (...) {
    m.close_all();
    ::unlink(m.tmp.c_str());
    throw;
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (impl_ && !impl_->finished) {
    impl_->close_all();
    ::unlink(impl_->tmp.c_str());
  }
}

void CheckpointWriter::add_layer(const std::string& tensor_name, const QuantizedLinear& q) {
  Impl& m = *impl_;
  GLVQ_CHECK(!m.finished, "cannot add layer {} to checkpoint {}: it is already finished", tensor_name, m.path);
  const LayerPath p = layer_path_of(tensor_name);
  m.claim(tensor_name);
  auto it = m.blocks.find(p.block);
  if (it == m.blocks.end()) {
    it = m.blocks.emplace(p.block, h5_create_group(m.layers.id(), std::to_string(p.block), m.path)).first;
  }
  write_layer_group(it->second.id(), tensor_name, q, m.path);
  m.bits += count_bits(q);
  m.format_version = std::max(m.format_version, layer_format_version(q));
  m.losses[tensor_name] = {{"loss", q.loss}, {"loss_init", q.loss_init}, {"seconds", q.seconds}};
  ++m.layer_count;
}

void CheckpointWriter::add_tensor(const TensorView& v) {
  Impl& m = *impl_;
  GLVQ_CHECK(!m.finished, "cannot add tensor {} to checkpoint {}: it is already finished", v.name, m.path);
  m.claim(v.name);
  // Unquantized weights (bf16/fp16) gain little from deflate and would slow gather; stored as they are.
  h5_write_raw(m.tensors.id(), v.name, v.dtype, v.shape, v.data, v.nbytes, H5Compression{},
               fmt::format("{}: tensor {}", m.path, v.name));
  m.unquantized_bits += 8.0 * static_cast<double>(v.nbytes);
  m.unquantized_params += numel_of(v.shape);
  ++m.tensor_count;
}

void CheckpointWriter::add_tensor(const std::string& name, const at::Tensor& t) {
  GLVQ_CHECK(t.defined() && t.device().is_cpu(), "checkpoint tensor {} must be a CPU tensor", name);
  const at::Tensor c = t.contiguous();
  TensorView v;
  v.name = name;
  v.dtype = dtype_of(c.scalar_type());
  v.shape.assign(c.sizes().begin(), c.sizes().end());
  v.data = c.data_ptr();
  v.nbytes = static_cast<size_t>(c.numel()) * c.element_size();
  add_tensor(v);
}

void CheckpointWriter::finish(const CheckpointInfo& info) {
  Impl& m = *impl_;
  GLVQ_CHECK(!m.finished, "checkpoint {} is already finished", m.path);
  const hid_t f = m.file.id();
  h5_set_attr(f, "format", kCheckpointFormat);
  h5_set_attr(f, "format_version", m.format_version);
  h5_set_attr(f, "model_config", info.model_config);
  h5_set_attr(f, "config", info.config);
  h5_set_attr(f, "method", info.method);
  h5_set_attr(f, "git_commit", info.git_commit);
  h5_set_attr_json(f, "provenance", info.provenance.is_null() ? nlohmann::json::object() : info.provenance);
  h5_set_attr(f, "bits_per_weight", m.bits.total());
  h5_set_attr_json(f, "bits_breakdown", bits_breakdown_json(m.bits));
  const double all_params = static_cast<double>(m.bits.weights + m.unquantized_params);
  h5_set_attr(f, "bits_per_weight_model",
              all_params > 0 ? (m.bits.total() * static_cast<double>(m.bits.weights) + m.unquantized_bits) / all_params
                             : 0.0);
  h5_set_attr_json(f, "layer_losses", m.losses);
  h5_set_attr(f, "layer_count", m.layer_count);
  h5_set_attr(f, "tensor_count", m.tensor_count);
  m.blocks.clear();
  m.layers.reset();
  m.tensors.reset();
  try {
    h5_close_file(m.file, m.path);
    fsync_and_rename(m.tmp, m.path);
  } catch (...) {
    m.close_all();
    ::unlink(m.tmp.c_str());
    m.finished = true;
    throw;
  }
  m.finished = true;
}

void write_checkpoint(const std::string& path, const CheckpointContents& c) {
  CheckpointWriter w(path);
  for (const auto& [name, q] : c.layers) w.add_layer(name, q);
  for (const TensorView& v : c.tensors) w.add_tensor(v);
  w.finish(c.info);
}

// ---------------------------------------------------------------- reader

struct CheckpointReader::Impl {
  std::string path;
  H5Handle file, layers, tensors;
  std::vector<std::string> layer_order;                            ///< tensor names
  std::map<std::string, std::pair<std::string, std::string>> loc;  ///< tensor name -> (block, linear)
  std::vector<std::string> tensor_order;

  std::string where(const std::string& name) const {
    const auto& [b, l] = loc.at(name);
    return fmt::format("{}: /layers/{}/{}", path, b, l);
  }
  H5Handle open_layer(const std::string& name) const {
    auto it = loc.find(name);
    GLVQ_CHECK(it != loc.end(), "{} has no quantized layer {}", path, name);
    H5Handle bg = h5_open_group(layers.id(), it->second.first, path + ": /layers");
    return h5_open_group(bg.id(), it->second.second, where(name));
  }
};

CheckpointReader::CheckpointReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.file = h5_open_read(path, kWhat);
  check_file_format(m.file.id(), path, kCheckpointFormat, kCheckpointFormatVersion, kWhat);
  m.layers = h5_open_group(m.file.id(), "layers", path);
  m.tensors = h5_open_group(m.file.id(), "tensors", path);
  std::vector<std::pair<int, std::string>> blocks;
  for (const std::string& b : h5_children(m.layers.id(), path + ": /layers")) {
    int k = -1;
    try {
      size_t used = 0;
      k = std::stoi(b, &used);
      if (used != b.size() || std::to_string(k) != b) k = -1;
    } catch (const std::exception&) {
    }
    GLVQ_CHECK(k >= 0, "{}: /layers/{} is not a block number", path, b);
    blocks.emplace_back(k, b);
  }
  std::sort(blocks.begin(), blocks.end());
  for (const auto& [k, b] : blocks) {
    H5Handle bg = h5_open_group(m.layers.id(), b, path + ": /layers");
    for (const std::string& linear : h5_children(bg.id(), path)) {
      const std::string where = fmt::format("{}: /layers/{}/{}", path, b, linear);
      H5Handle g = h5_open_group(bg.id(), linear, where);
      const std::string name = read_layer_tensor_name(g.id(), where);
      GLVQ_CHECK(name == layer_tensor_name(k, linear), "{}: tensor_name \"{}\" does not match the group", where,
                 name);
      m.layer_order.push_back(name);
      m.loc[name] = {b, linear};
    }
  }
  m.tensor_order = h5_children(m.tensors.id(), path + ": /tensors");
  const int64_t layer_count = h5_get_attr_int(m.file.id(), "layer_count", path + ": root");
  const int64_t tensor_count = h5_get_attr_int(m.file.id(), "tensor_count", path + ": root");
  GLVQ_CHECK(layer_count == static_cast<int64_t>(m.layer_order.size()) &&
                 tensor_count == static_cast<int64_t>(m.tensor_order.size()),
             "{} is incomplete: it lists {} layers and {} tensors but holds {} and {}", path, layer_count,
             tensor_count, m.layer_order.size(), m.tensor_order.size());
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::path() const { return impl_->path; }

nlohmann::json CheckpointReader::root_attrs() const {
  const Impl& m = *impl_;
  nlohmann::json j = nlohmann::json::object();
  for (const std::string& a : h5_attr_names(m.file.id())) {
    j[a] = json_root_attrs().count(a) ? h5_get_attr_json(m.file.id(), a, m.path + ": root")
                                      : h5_get_attr_any(m.file.id(), a, m.path + ": root");
  }
  return j;
}

std::string CheckpointReader::root_attr_text(const std::string& name) const {
  return h5_get_attr_string(impl_->file.id(), name, impl_->path + ": root");
}

std::vector<std::string> CheckpointReader::layer_names() const { return impl_->layer_order; }

bool CheckpointReader::has_layer(const std::string& name) const { return impl_->loc.count(name) != 0; }

QuantizedLinear CheckpointReader::layer(const std::string& name) const {
  H5Handle g = impl_->open_layer(name);
  return read_layer_group(g.id(), impl_->where(name));
}

QuantizedLinear CheckpointReader::layer_header(const std::string& name) const {
  H5Handle g = impl_->open_layer(name);
  return read_layer_header(g.id(), impl_->where(name));
}

at::Tensor CheckpointReader::layer_array(const std::string& name, const std::string& array) const {
  H5Handle g = impl_->open_layer(name);
  GLVQ_CHECK(h5_exists(g.id(), array), "{}: the layer has no array '{}'", impl_->where(name), array);
  return h5_read_tensor(g.id(), array, fmt::format("{}/{}", impl_->where(name), array));
}

std::map<std::string, StoredTensorInfo> CheckpointReader::layer_array_info(const std::string& name) const {
  H5Handle g = impl_->open_layer(name);
  std::map<std::string, StoredTensorInfo> out;
  for (const std::string& a : h5_children(g.id(), impl_->where(name))) {
    out[a] = to_stored(h5_dataset_info(g.id(), a, impl_->where(name) + "/" + a));
  }
  return out;
}

std::vector<std::string> CheckpointReader::tensor_names() const { return impl_->tensor_order; }

bool CheckpointReader::has_tensor(const std::string& name) const {
  return std::find(impl_->tensor_order.begin(), impl_->tensor_order.end(), name) != impl_->tensor_order.end();
}

at::Tensor CheckpointReader::tensor(const std::string& name) const {
  GLVQ_CHECK(has_tensor(name), "{} has no unquantized tensor {}", impl_->path, name);
  return h5_read_tensor(impl_->tensors.id(), name, fmt::format("{}: /tensors/{}", impl_->path, name));
}

StoredTensorInfo CheckpointReader::tensor_info(const std::string& name) const {
  GLVQ_CHECK(has_tensor(name), "{} has no unquantized tensor {}", impl_->path, name);
  return to_stored(h5_dataset_info(impl_->tensors.id(), name, fmt::format("{}: /tensors/{}", impl_->path, name)));
}

}  // namespace glvq
