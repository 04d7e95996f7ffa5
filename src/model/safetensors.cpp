#include "model/safetensors.h"

#include "common/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

namespace glvq {
namespace {

using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; a larger length
// means the first 8 bytes are not a safetensors length at all.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr const char* kSupportedDTypes = "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL";

uint64_t read_le_u64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void put_le_u64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

std::string errno_text(int err) { return std::strerror(err); }

// numel(shape) * elem_size, or false on overflow.
bool shape_bytes(const std::vector<int64_t>& shape, size_t elem_size, uint64_t* out) {
  uint64_t n = elem_size;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  *out = n;
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Validates one header entry and fills VIEW (without the data pointer); the
// offsets are checked against the file size by the caller.
void parse_entry(const std::string& path, const std::string& name, const json& e, TensorView* view,
                 uint64_t* begin_out, uint64_t* end_out) {
  GLVQ_CHECK(e.is_object(),
             "{}: tensor {}: header entry is a JSON {}, expected an object with dtype, shape and "
             "data_offsets: the file is not a valid safetensors file",
             path, name, e.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    GLVQ_CHECK(e.contains(field),
               "{}: tensor {}: header entry has no '{}' field: the file is not a valid safetensors "
               "file (re-download or re-export it)",
               path, name, field);
  }

  const json& jd = e["dtype"];
  GLVQ_CHECK(jd.is_string(), "{}: tensor {}: 'dtype' is a JSON {}, expected a string such as \"BF16\"",
             path, name, jd.type_name());
  const std::string ds = jd.get<std::string>();
  GLVQ_CHECK(parse_dtype(ds, &view->dtype),
             "{}: tensor {}: dtype \"{}\" is not supported (supported: {}); convert the checkpoint "
             "to BF16/F16/F32 first",
             path, name, ds, kSupportedDTypes);

  const json& js = e["shape"];
  GLVQ_CHECK(js.is_array(), "{}: tensor {}: 'shape' is a JSON {}, expected an array of integers", path,
             name, js.type_name());
  view->shape.clear();
  for (size_t i = 0; i < js.size(); ++i) {
    const json& d = js[i];
    GLVQ_CHECK(d.is_number_integer(), "{}: tensor {}: shape[{}] is {}, expected a non-negative integer",
               path, name, i, d.dump());
    GLVQ_CHECK(!d.is_number_unsigned() || d.get<uint64_t>() <= uint64_t(INT64_MAX),
               "{}: tensor {}: shape[{}] is {}, which does not fit in int64: the header is corrupt",
               path, name, i, d.dump());
    const int64_t v = d.get<int64_t>();
    GLVQ_CHECK(v >= 0, "{}: tensor {}: shape[{}] is {}, a negative dimension: the header is corrupt",
               path, name, i, v);
    view->shape.push_back(v);
  }

  const json& jo = e["data_offsets"];
  GLVQ_CHECK(jo.is_array() && jo.size() == 2,
             "{}: tensor {}: 'data_offsets' is {}, expected [begin, end]", path, name, jo.dump());
  for (size_t i = 0; i < 2; ++i) {
    GLVQ_CHECK(jo[i].is_number_unsigned() || (jo[i].is_number_integer() && jo[i].get<int64_t>() >= 0),
               "{}: tensor {}: data_offsets[{}] is {}, expected a non-negative integer", path, name, i,
               jo[i].dump());
  }
  const uint64_t begin = jo[0].get<uint64_t>();
  const uint64_t end = jo[1].get<uint64_t>();
  GLVQ_CHECK(begin <= end, "{}: tensor {}: data offsets [{}, {}) have begin > end: the header is corrupt",
             path, name, begin, end);

  uint64_t want = 0;
  GLVQ_CHECK(shape_bytes(view->shape, dtype_size(view->dtype), &want),
             "{}: tensor {}: shape {} of {} overflows 64 bits: the header is corrupt", path, name,
             shape_str(view->shape), ds);
  GLVQ_CHECK(end - begin == want,
             "{}: tensor {}: data offsets [{}, {}) hold {} bytes, but shape {} of {} needs {} bytes: "
             "the header is corrupt",
             path, name, begin, end, end - begin, shape_str(view->shape), ds, want);

  view->name = name;
  view->file = path;
  view->nbytes = static_cast<size_t>(want);
  *begin_out = begin;
  *end_out = end;
}

// Closes the descriptor on every path out of open().
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

// Writes all of [p, p+n) to FD; returns 0 or an errno value.
int write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  GLVQ_CHECK(fd.fd >= 0, "{}: cannot open safetensors file: {}", path, errno_text(errno));
  struct stat st {};
  GLVQ_CHECK(::fstat(fd.fd, &st) == 0, "{}: cannot stat safetensors file: {}", path, errno_text(errno));
  GLVQ_CHECK(S_ISREG(st.st_mode), "{}: not a regular file", path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  GLVQ_CHECK(size > 0, "{}: the file is empty (0 bytes): the download or export did not finish; "
             "re-download it", path);

  // PROT_READ + MAP_PRIVATE: pages are faulted in only when a tensor's data is read.
  void* m = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd.fd, 0);
  GLVQ_CHECK(m != MAP_FAILED, "{}: cannot mmap {} bytes: {}", path, size, errno_text(errno));
  std::shared_ptr<SafetensorsFile> f;
  try {
    f = parse(m, static_cast<size_t>(size), path);
  } catch (...) {
    ::munmap(m, static_cast<size_t>(size));
    throw;
  }
  f->map_ = m;
  f->map_size_ = static_cast<size_t>(size);
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::parse(const void* bytes, size_t size_bytes,
                                                        const std::string& path) {
  const uint64_t size = size_bytes;
  GLVQ_CHECK(size >= 8,
             "{}: the file is {} bytes, shorter than the 8-byte header length: the file is "
             "truncated; re-download it",
             path, size);
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const unsigned char* base = static_cast<const unsigned char*>(bytes);

  const uint64_t n = read_le_u64(base);
  GLVQ_CHECK(n <= size - 8,
             "{}: header length {} runs past the end of the file ({} bytes): the file is truncated "
             "or not a safetensors file",
             path, n, size);
  GLVQ_CHECK(n <= kMaxHeaderBytes,
             "{}: header length {} is above the 100 MB limit of the format: not a safetensors file",
             path, n);
  GLVQ_CHECK(n >= 2, "{}: header length is {}: too short for a JSON object; not a safetensors file",
             path, n);

  json header;
  try {
    header = json::parse(base + 8, base + 8 + n);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for an overflowing number (found by fuzzing)
    GLVQ_FAIL("{}: the {}-byte header is not valid JSON ({}): the file is corrupt or not a "
              "safetensors file",
              path, n, e.what());
  }
  GLVQ_CHECK(header.is_object(), "{}: the header is a JSON {}, expected an object: not a safetensors file",
             path, header.type_name());

  const uint64_t data_size = size - 8 - n;
  const unsigned char* data = base + 8 + n;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
    TensorView* view;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      GLVQ_CHECK(it->is_object(), "{}: '__metadata__' is a JSON {}, expected an object of strings",
                 path, it->type_name());
      for (auto m2 = it->begin(); m2 != it->end(); ++m2) {
        GLVQ_CHECK(m2->is_string(), "{}: __metadata__ field '{}' is {}, expected a string", path,
                   m2.key(), m2->dump());
        f->metadata_[m2.key()] = m2->get<std::string>();
      }
      continue;
    }
    TensorView v;
    uint64_t begin = 0, end = 0;
    parse_entry(path, it.key(), *it, &v, &begin, &end);
    auto ins = f->tensors_.emplace(it.key(), std::move(v));
    spans.push_back({begin, end, &ins.first->first, &ins.first->second});
  }

  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // In data order, so a truncated file names the tensor where the data stops.
  for (const Span& s : spans) {
    GLVQ_CHECK(s.end <= data_size,
               "{}: tensor {}: data offsets [{}, {}) run past the end of the file ({} bytes, of which "
               "{} are data after the {}-byte header): the file is truncated; re-download it",
               path, *s.name, s.begin, s.end, size, data_size, 8 + n);
  }
  // Empty tensors take no bytes and may sit anywhere.
  const Span* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin == s.end) continue;
    if (prev) {
      GLVQ_CHECK(s.begin >= prev->end,
                 "{}: tensor {}: data offsets [{}, {}) overlap tensor {} at [{}, {}): the header is "
                 "corrupt",
                 path, *s.name, s.begin, s.end, *prev->name, prev->begin, prev->end);
    }
    prev = &s;
  }
  for (const Span& s : spans) s.view->data = data + s.begin;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  GLVQ_CHECK(it != tensors_.end(), "{}: no tensor named '{}' in this file ({} tensors)", path_, name,
             tensors_.size());
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const TensorToWrite& t : tensors) {
    uint64_t n = 0;
    GLVQ_CHECK(!shape_bytes(t.shape, dtype_size(t.dtype), &n) || n == 0 || t.data != nullptr,
               "{}: tensor {}: data is null for {} bytes", path, t.name, n);
    specs.push_back({t.name, t.dtype, t.shape});
  }
  write_safetensors_streamed(path, specs, metadata, [&](size_t i, const ByteSink& sink) {
    uint64_t n = 0;
    shape_bytes(tensors[i].shape, dtype_size(tensors[i].dtype), &n);
    sink(tensors[i].data, n);
  });
}

void write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& tensors,
                                const std::map<std::string, std::string>& metadata, const TensorProducer& produce) {
  json header = json::object();
  std::set<std::string> seen;
  std::vector<uint64_t> nbytes;
  uint64_t offset = 0;
  // No padding between tensors: the reference reader rejects holes in the data buffer.
  for (const TensorSpec& t : tensors) {
    GLVQ_CHECK(!t.name.empty() && t.name != "__metadata__",
               "{}: cannot write a tensor named '{}': the name is reserved or empty", path, t.name);
    GLVQ_CHECK(seen.insert(t.name).second, "{}: tensor {} is given twice", path, t.name);
    uint64_t n = 0;
    GLVQ_CHECK(shape_bytes(t.shape, dtype_size(t.dtype), &n),
               "{}: tensor {}: shape {} has a negative dimension or is too large", path, t.name,
               shape_str(t.shape));
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + n}}};
    nbytes.push_back(n);
    offset += n;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::string hs = header.dump();
  // Pad so the data buffer starts 8-byte aligned (8 + len is a multiple of 8).
  hs.append((8 - hs.size() % 8) % 8, ' ');
  unsigned char len[8];
  put_le_u64(len, hs.size());

  const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  GLVQ_CHECK(fd >= 0, "{}: cannot create temporary file {}: {} (does the directory exist and is it "
             "writable?)", path, tmp, errno_text(errno));
  int err = write_all(fd, len, 8);
  if (!err) err = write_all(fd, hs.data(), hs.size());
  for (size_t i = 0; i < tensors.size() && !err; ++i) {
    uint64_t written = 0;
    try {
      produce(i, [&](const void* p, size_t n) {
        if (!err) err = write_all(fd, p, n);
        written += n;
      });
    } catch (...) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw;
    }
    if (!err && written != nbytes[i]) {
      ::close(fd);
      ::unlink(tmp.c_str());
      GLVQ_FAIL("{}: tensor {}: {} bytes were produced for a {}-byte tensor", path, tensors[i].name, written,
                nbytes[i]);
    }
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    GLVQ_FAIL("{}: cannot write safetensors file: {} (disk full or read-only?); the previous file, "
              "if any, is unchanged", path, errno_text(err));
  }
  // Make the rename itself durable.
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace glvq
