#pragma once
/// Thin helpers over the HDF5 C API, shared by block files and checkpoints:
/// owned handles, errors that carry HDF5's own diagnosis, tensors stored as
/// datasets with an exact dtype mapping and a content checksum, and scalar
/// attributes (strings, integers, doubles, JSON as text).
///
/// Dataset dtypes (docs/FORMAT.md): uint8/int8/int16/int32/int64/float32/
/// float64 as the little-endian HDF5 types; float16 as the IEEE half type
/// (h5py's float16); bfloat16 as uint16 with the attribute dtype="bfloat16";
/// bool as uint8 with dtype="bool". Every dataset carries the attribute
/// xxh64 = checksum_bytes() of its raw little-endian bytes.
///
/// Not thread-safe: a rank uses HDF5 from one thread (the Debian build is serial).
#include "common/error.h"
#include "model/dtype.h"
#include "nn/tensor_io.h"  // scalar_type_of / dtype_of

#include <ATen/ATen.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace glvq {

/// Turns off HDF5's printing of error stacks (we report them in glvq::Error);
/// every entry point of src/ckpt calls it before touching HDF5.
void h5_quiet();

/// The innermost description on this thread's HDF5 error stack (e.g.
/// "truncated file: eof = 1024, ..."), or "no HDF5 detail"; clears the stack.
std::string h5_error_text();

}  // namespace glvq

/// Throws glvq::Error (message + HDF5's diagnosis) when the HDF5 call EXPR
/// returns a negative herr_t / hid_t.
#define H5_CHECK(expr, ...)                                                                          \
  do {                                                                                               \
    if ((expr) < 0) {                                                                                \
      const std::string h5_detail_ = ::glvq::h5_error_text();                                        \
      throw ::glvq::Error(fmt::format(__VA_ARGS__) + " (HDF5: " + h5_detail_ + ")", __FILE__, __LINE__); \
    }                                                                                                \
  } while (0)

namespace glvq {

/// An owned HDF5 identifier, closed by its type's close function.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  /// Closes now and returns the close function's status (files report write errors here).
  herr_t close();
  void reset();

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

/// Opens PATH read-only; throws naming PATH: absent, not HDF5, truncated.
/// WHAT names the kind of file in messages ("block file", "checkpoint").
H5Handle h5_open_read(const std::string& path, const std::string& what);
/// Creates (truncates) PATH for writing, with object formats readable by HDF5 >= 1.8
/// (the 1.8 format lifts the 64 KiB limit on attributes).
H5Handle h5_create(const std::string& path);
/// Flushes and closes FILE; throws naming PATH when HDF5 reports an error.
void h5_close_file(H5Handle& file, const std::string& path);

H5Handle h5_create_group(hid_t loc, const std::string& name, const std::string& where);
/// Opens LOC/NAME as a group; throws naming WHERE when absent or not a group.
H5Handle h5_open_group(hid_t loc, const std::string& name, const std::string& where);
bool h5_exists(hid_t loc, const std::string& name);
/// Names of LOC's direct children in name order.
std::vector<std::string> h5_children(hid_t loc, const std::string& where);
bool h5_is_group(hid_t loc, const std::string& name);

// ---- attributes (scalars; strings are variable-length UTF-8)
void h5_set_attr(hid_t obj, const std::string& name, const std::string& value);
void h5_set_attr(hid_t obj, const std::string& name, const char* value);
void h5_set_attr(hid_t obj, const std::string& name, int64_t value);
void h5_set_attr(hid_t obj, const std::string& name, double value);
/// JSON as its dump() text.
void h5_set_attr_json(hid_t obj, const std::string& name, const nlohmann::json& value);

bool h5_has_attr(hid_t obj, const std::string& name);
std::vector<std::string> h5_attr_names(hid_t obj);
/// Reads a string attribute (variable or fixed length); throws naming WHERE when
/// absent or not a string.
std::string h5_get_attr_string(hid_t obj, const std::string& name, const std::string& where);
int64_t h5_get_attr_int(hid_t obj, const std::string& name, const std::string& where);
double h5_get_attr_double(hid_t obj, const std::string& name, const std::string& where);
nlohmann::json h5_get_attr_json(hid_t obj, const std::string& name, const std::string& where);
/// Any scalar attribute as JSON: strings as strings, integers, floats.
nlohmann::json h5_get_attr_any(hid_t obj, const std::string& name, const std::string& where);

// ---- datasets
/// Deflate (with byte shuffle) on chunks of about 1 MiB; worth it for fp16
/// metadata and small integers, not for packed codes or random sign bits.
struct H5Compression {
  bool deflate = false;
  int level = 4;
};

/// Writes NBYTES at DATA (dtype DTYPE, shape SHAPE, row-major) as LOC/NAME and
/// attaches its xxh64. WHERE names the dataset in messages.
void h5_write_raw(hid_t loc, const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  const void* data, size_t nbytes, const H5Compression& comp, const std::string& where);
/// The same for a CPU tensor (made contiguous first).
void h5_write_tensor(hid_t loc, const std::string& name, const at::Tensor& t, const H5Compression& comp,
                     const std::string& where);

struct H5DatasetInfo {
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  size_t storage_bytes = 0;  ///< bytes the dataset occupies in the file (after compression)
};
/// Type and shape of LOC/NAME without reading it; throws naming WHERE for
/// absent datasets or dtypes outside the mapping above.
H5DatasetInfo h5_dataset_info(hid_t loc, const std::string& name, const std::string& where);

/// Reads LOC/NAME into a new contiguous CPU tensor of its stored dtype and
/// verifies its xxh64 (throws naming WHERE on a mismatch or a missing checksum).
at::Tensor h5_read_tensor(hid_t loc, const std::string& name, const std::string& where);

}  // namespace glvq
