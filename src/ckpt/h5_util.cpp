#include "ckpt/h5_util.h"

#include "ckpt/checksum.h"
#include "common/fs_util.h"

#include <algorithm>
#include <cstring>

namespace glvq {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "glvq's HDF5 files are written from little-endian memory without conversion"
#endif

namespace {

constexpr size_t kChunkTargetBytes = size_t(1) << 20;
constexpr const char* kChecksumAttr = "xxh64";
constexpr const char* kDtypeAttr = "dtype";

H5Handle make_type(hid_t id) { return H5Handle(id, H5Tclose); }

/// IEEE binary16 as h5py defines it (h5t.pyx), so numpy/h5py read float16.
H5Handle half_type() {
  H5Handle t = make_type(H5Tcopy(H5T_IEEE_F32LE));
  H5_CHECK(t.id(), "cannot create the HDF5 float16 type");
  H5_CHECK(H5Tset_fields(t.id(), 15, 10, 5, 0, 10), "cannot create the HDF5 float16 type");
  H5_CHECK(H5Tset_size(t.id(), 2), "cannot create the HDF5 float16 type");
  H5_CHECK(H5Tset_ebias(t.id(), 15), "cannot create the HDF5 float16 type");
  return t;
}

/// The little-endian file type of DTYPE (also the memory type we write from).
H5Handle file_type_of(DType dtype) {
  hid_t base = -1;
  switch (dtype) {
    case DType::U8: case DType::BOOL: base = H5T_STD_U8LE; break;
    case DType::I8: base = H5T_STD_I8LE; break;
    case DType::I16: base = H5T_STD_I16LE; break;
    case DType::I32: base = H5T_STD_I32LE; break;
    case DType::I64: base = H5T_STD_I64LE; break;
    case DType::F32: base = H5T_IEEE_F32LE; break;
    case DType::F64: base = H5T_IEEE_F64LE; break;
    case DType::BF16: base = H5T_STD_U16LE; break;
    case DType::F16: return half_type();
  }
  GLVQ_ASSERT(base >= 0);
  H5Handle t = make_type(H5Tcopy(base));
  H5_CHECK(t.id(), "cannot copy an HDF5 type");
  return t;
}

H5Handle scalar_or_simple_space(const std::vector<int64_t>& shape) {
  if (shape.empty()) return H5Handle(H5Screate(H5S_SCALAR), H5Sclose);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return H5Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

H5Handle open_attr(hid_t obj, const std::string& name, const std::string& where) {
  GLVQ_CHECK(h5_has_attr(obj, name), "{}: attribute '{}' is missing", where, name);
  H5Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  H5_CHECK(a.id(), "{}: cannot open attribute '{}'", where, name);
  H5Handle space(H5Aget_space(a.id()), H5Sclose);
  H5_CHECK(space.id(), "{}: cannot read attribute '{}'", where, name);
  GLVQ_CHECK(H5Sget_simple_extent_npoints(space.id()) == 1, "{}: attribute '{}' is not a single value", where,
             name);
  return a;
}

H5T_class_t attr_class(hid_t attr, const std::string& name, const std::string& where) {
  H5Handle t = make_type(H5Aget_type(attr));
  H5_CHECK(t.id(), "{}: cannot read the type of attribute '{}'", where, name);
  return H5Tget_class(t.id());
}

void write_scalar_attr(hid_t obj, const std::string& name, hid_t type, const void* value) {
  if (h5_has_attr(obj, name)) H5_CHECK(H5Adelete(obj, name.c_str()), "cannot replace attribute '{}'", name);
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5_CHECK(space.id(), "cannot create attribute '{}'", name);
  H5Handle a(H5Acreate2(obj, name.c_str(), type, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5_CHECK(a.id(), "cannot create attribute '{}'", name);
  H5_CHECK(H5Awrite(a.id(), type, value), "cannot write attribute '{}'", name);
}

herr_t collect_child(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

herr_t deepest_error(unsigned, const H5E_error2_t* e, void* out) {
  if (e->desc && *e->desc) *static_cast<std::string*>(out) = e->desc;
  return 0;
}

/// Dtype of an open dataset from its HDF5 type and its 'dtype' attribute.
DType dataset_dtype(hid_t ds, const std::string& where) {
  H5Handle t = make_type(H5Dget_type(ds));
  H5_CHECK(t.id(), "{}: cannot read the dataset type", where);
  const H5T_class_t cls = H5Tget_class(t.id());
  const size_t size = H5Tget_size(t.id());
  const std::string tag = h5_has_attr(ds, kDtypeAttr) ? h5_get_attr_string(ds, kDtypeAttr, where) : "";
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(t.id()) == H5T_SGN_2;
    if (size == 1 && !is_signed) return tag == "bool" ? DType::BOOL : DType::U8;
    if (size == 1) return DType::I8;
    if (size == 2 && !is_signed && tag == "bfloat16") return DType::BF16;
    if (size == 2 && is_signed) return DType::I16;
    if (size == 4 && is_signed) return DType::I32;
    if (size == 8 && is_signed) return DType::I64;
    GLVQ_FAIL("{}: {} {}-byte integers are not a glvq dtype (uint16 needs the attribute dtype=\"bfloat16\")",
              where, is_signed ? "signed" : "unsigned", size);
  }
  if (cls == H5T_FLOAT) {
    if (size == 4) return DType::F32;
    if (size == 8) return DType::F64;
    size_t spos, epos, esize, mpos, msize;
    H5_CHECK(H5Tget_fields(t.id(), &spos, &epos, &esize, &mpos, &msize), "{}: cannot read the float type", where);
    if (size == 2 && esize == 5 && msize == 10 && H5Tget_ebias(t.id()) == 15) return DType::F16;
    if (size == 2 && esize == 8 && msize == 7 && H5Tget_ebias(t.id()) == 127) return DType::BF16;
    GLVQ_FAIL("{}: a {}-byte float with {} exponent and {} mantissa bits is not a glvq dtype", where, size, esize,
              msize);
  }
  GLVQ_FAIL("{}: datasets of HDF5 type class {} are not glvq arrays (numbers only)", where, static_cast<int>(cls));
}

/// File access properties: file locks where the file system has them (Lustre and
/// NFS mounts often do not: there HDF5 would refuse to open any file).
H5Handle file_access(bool for_write, const std::string& path) {
  H5Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5_CHECK(fapl.id(), "cannot open {}", path);
#if H5_VERSION_GE(1, 10, 7)
  H5_CHECK(H5Pset_file_locking(fapl.id(), true, true), "cannot open {}", path);
#endif
  if (for_write) {
    // The 1.8 object format: readable by HDF5 >= 1.8 and h5py, and free of the 64 KiB attribute limit.
    H5_CHECK(H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V18), "cannot create {}", path);
  }
  return fapl;
}

}  // namespace

// ---------------------------------------------------------------- errors, handles

void h5_quiet() {
  // No HDF5 atexit clean-up: after a write failed (disk full) HDF5 cannot close
  // that file, and its exit-time close of it crashed (segfault, exit 139 instead
  // of the error's code). Every file we keep is closed and flushed explicitly;
  // the OS releases a broken one. Must precede the library's initialisation.
  static const bool no_atexit = (H5dont_atexit(), true);
  (void)no_atexit;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

std::string h5_error_text() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, deepest_error, &msg);
  H5Eclear2(H5E_DEFAULT);
  if (msg.empty()) return "no HDF5 detail";
  // A failed system call is described in one long line (time, fd, buffer address...);
  // what the user needs is the OS error, e.g. "No space left on device".
  const std::string key = "error message = '";
  const size_t at = msg.find(key);
  if (msg.rfind("file write failed", 0) == 0 || msg.rfind("file read failed", 0) == 0) {
    if (at != std::string::npos) {
      const size_t end = msg.find('\'', at + key.size());
      if (end != std::string::npos)
        return msg.substr(0, msg.find(':')) + ": " + msg.substr(at + key.size(), end - at - key.size());
    }
  }
  return msg;
}

H5Handle& H5Handle::operator=(H5Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
  }
  return *this;
}

herr_t H5Handle::close() {
  herr_t rc = 0;
  if (id_ >= 0 && closer_) rc = closer_(id_);
  id_ = -1;
  return rc;
}

void H5Handle::reset() {
  // Errors on this path (unwinding) are ignored: the primary error is already being reported.
  if (id_ >= 0 && closer_) {
    closer_(id_);
    H5Eclear2(H5E_DEFAULT);
  }
  id_ = -1;
}

// ---------------------------------------------------------------- files and groups

H5Handle h5_open_read(const std::string& path, const std::string& what) {
  h5_quiet();
  GLVQ_CHECK(file_exists(path), "cannot read {} {}: the file does not exist", what, path);
  H5Handle fapl = file_access(false, path);
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id()), H5Fclose);
  if (f.valid()) return f;
  const std::string detail = h5_error_text();
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  GLVQ_CHECK(is_h5 > 0, "cannot read {} {}: it is not an HDF5 file (no HDF5 signature; empty, foreign or "
             "overwritten)", what, path);
  GLVQ_FAIL("cannot read {} {}: the HDF5 file is truncated or damaged ({}); it was cut short or copied "
            "incompletely", what, path, detail);
}

H5Handle h5_create(const std::string& path) {
  h5_quiet();
  H5Handle fapl = file_access(true, path);
  // The root group records times too unless told not to: two writes of the same
  // content a second apart would differ (and a resumed block file would not equal
  // the uninterrupted run's).
  H5Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5_CHECK(H5Pset_obj_track_times(fcpl.id(), 0), "cannot create {}", path);
  H5Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.id(), fapl.id()), H5Fclose);
  H5_CHECK(f.id(), "cannot create {}", path);
  return f;
}

void h5_close_file(H5Handle& file, const std::string& path) {
  H5_CHECK(H5Fflush(file.id(), H5F_SCOPE_GLOBAL), "cannot write {}: flushing failed", path);
  H5_CHECK(file.close(), "cannot write {}: closing failed", path);
}

H5Handle h5_create_group(hid_t loc, const std::string& name, const std::string& where) {
  H5Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5_CHECK(gcpl.id(), "{}: cannot create group '{}'", where, name);
  // No modification times: equal content gives byte-identical files (resumed vs uninterrupted runs).
  H5_CHECK(H5Pset_obj_track_times(gcpl.id(), 0), "{}: cannot create group '{}'", where, name);
  H5Handle g(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, gcpl.id(), H5P_DEFAULT), H5Gclose);
  H5_CHECK(g.id(), "{}: cannot create group '{}'", where, name);
  return g;
}

bool h5_exists(hid_t loc, const std::string& name) {
  const htri_t r = H5Lexists(loc, name.c_str(), H5P_DEFAULT);
  if (r < 0) H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

bool h5_is_group(hid_t loc, const std::string& name) {
  if (!h5_exists(loc, name)) return false;
  H5Handle o(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.valid()) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  return H5Iget_type(o.id()) == H5I_GROUP;
}

H5Handle h5_open_group(hid_t loc, const std::string& name, const std::string& where) {
  GLVQ_CHECK(h5_is_group(loc, name), "{}: group '{}' is missing", where, name);
  H5Handle g(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), H5Gclose);
  H5_CHECK(g.id(), "{}: cannot open group '{}'", where, name);
  return g;
}

std::vector<std::string> h5_children(hid_t loc, const std::string& where) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  H5_CHECK(H5Literate(loc, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_child, &names), "{}: cannot list members",
           where);
  return names;
}

// ---------------------------------------------------------------- attributes

void h5_set_attr(hid_t obj, const std::string& name, const char* value) {
  H5Handle t = make_type(H5Tcopy(H5T_C_S1));
  H5_CHECK(t.id(), "cannot create attribute '{}'", name);
  H5_CHECK(H5Tset_size(t.id(), H5T_VARIABLE), "cannot create attribute '{}'", name);
  H5_CHECK(H5Tset_cset(t.id(), H5T_CSET_UTF8), "cannot create attribute '{}'", name);
  write_scalar_attr(obj, name, t.id(), &value);
}

void h5_set_attr(hid_t obj, const std::string& name, const std::string& value) {
  GLVQ_CHECK(value.find('\0') == std::string::npos, "attribute '{}': text holds a NUL byte", name);
  h5_set_attr(obj, name, value.c_str());
}

void h5_set_attr(hid_t obj, const std::string& name, int64_t value) {
  write_scalar_attr(obj, name, H5T_STD_I64LE, &value);
}

void h5_set_attr(hid_t obj, const std::string& name, double value) {
  write_scalar_attr(obj, name, H5T_IEEE_F64LE, &value);
}

void h5_set_attr_json(hid_t obj, const std::string& name, const nlohmann::json& value) {
  h5_set_attr(obj, name, value.dump());
}

bool h5_has_attr(hid_t obj, const std::string& name) {
  const htri_t r = H5Aexists(obj, name.c_str());
  if (r < 0) H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

std::vector<std::string> h5_attr_names(hid_t obj) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  H5_CHECK(H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &names), "cannot list attributes");
  return names;
}

std::string h5_get_attr_string(hid_t obj, const std::string& name, const std::string& where) {
  H5Handle a = open_attr(obj, name, where);
  H5Handle ft = make_type(H5Aget_type(a.id()));
  H5_CHECK(ft.id(), "{}: cannot read attribute '{}'", where, name);
  GLVQ_CHECK(H5Tget_class(ft.id()) == H5T_STRING, "{}: attribute '{}' is not text", where, name);
  H5Handle mt = make_type(H5Tcopy(H5T_C_S1));
  H5_CHECK(mt.id(), "{}: cannot read attribute '{}'", where, name);
  // HDF5 converts no text between character sets: read in the file's (ASCII or UTF-8).
  H5_CHECK(H5Tset_cset(mt.id(), H5Tget_cset(ft.id())), "{}: cannot read attribute '{}'", where, name);
  if (H5Tis_variable_str(ft.id()) > 0) {
    H5_CHECK(H5Tset_size(mt.id(), H5T_VARIABLE), "{}: cannot read attribute '{}'", where, name);
    char* p = nullptr;
    H5_CHECK(H5Aread(a.id(), mt.id(), &p), "{}: cannot read attribute '{}'", where, name);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t n = H5Tget_size(ft.id());
  H5_CHECK(H5Tset_size(mt.id(), n + 1), "{}: cannot read attribute '{}'", where, name);
  std::string buf(n + 1, '\0');
  H5_CHECK(H5Aread(a.id(), mt.id(), buf.data()), "{}: cannot read attribute '{}'", where, name);
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

int64_t h5_get_attr_int(hid_t obj, const std::string& name, const std::string& where) {
  H5Handle a = open_attr(obj, name, where);
  GLVQ_CHECK(attr_class(a.id(), name, where) == H5T_INTEGER, "{}: attribute '{}' is not an integer", where, name);
  int64_t v = 0;
  H5_CHECK(H5Aread(a.id(), H5T_NATIVE_INT64, &v), "{}: cannot read attribute '{}'", where, name);
  return v;
}

double h5_get_attr_double(hid_t obj, const std::string& name, const std::string& where) {
  H5Handle a = open_attr(obj, name, where);
  const H5T_class_t cls = attr_class(a.id(), name, where);
  GLVQ_CHECK(cls == H5T_FLOAT || cls == H5T_INTEGER, "{}: attribute '{}' is not a number", where, name);
  double v = 0;
  H5_CHECK(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v), "{}: cannot read attribute '{}'", where, name);
  return v;
}

nlohmann::json h5_get_attr_json(hid_t obj, const std::string& name, const std::string& where) {
  const std::string text = h5_get_attr_string(obj, name, where);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    GLVQ_FAIL("{}: attribute '{}' is not valid JSON ({})", where, name, e.what());
  }
}

nlohmann::json h5_get_attr_any(hid_t obj, const std::string& name, const std::string& where) {
  H5T_class_t cls;
  {
    H5Handle a = open_attr(obj, name, where);
    cls = attr_class(a.id(), name, where);
  }
  if (cls == H5T_STRING) return h5_get_attr_string(obj, name, where);
  if (cls == H5T_INTEGER) return h5_get_attr_int(obj, name, where);
  if (cls == H5T_FLOAT) return h5_get_attr_double(obj, name, where);
  GLVQ_FAIL("{}: attribute '{}' is neither text nor a number", where, name);
}

// ---------------------------------------------------------------- datasets

int64_t H5DatasetInfo::numel() const { return numel_of(shape); }

void h5_write_raw(hid_t loc, const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  const void* data, size_t nbytes, const H5Compression& comp, const std::string& where) {
  GLVQ_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." ,
             "{}: '{}' cannot be an HDF5 dataset name (no '/' allowed)", where, name);
  const int64_t n = numel_of(shape);
  GLVQ_CHECK(n >= 0 && static_cast<size_t>(n) * dtype_size(dtype) == nbytes,
             "{}: {} bytes given for {} elements of {}", where, nbytes, n, dtype_name(dtype));
  H5Handle ft = file_type_of(dtype);
  H5Handle space = scalar_or_simple_space(shape);
  H5_CHECK(space.id(), "{}: cannot create the dataspace", where);
  H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5_CHECK(dcpl.id(), "{}: cannot create the dataset", where);
  H5_CHECK(H5Pset_obj_track_times(dcpl.id(), 0), "{}: cannot create the dataset", where);
  if (comp.deflate && n > 0 && !shape.empty() && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
    std::vector<hsize_t> chunk(shape.begin(), shape.end());
    const size_t row_bytes = nbytes / static_cast<size_t>(shape[0]);
    chunk[0] = std::clamp<hsize_t>(kChunkTargetBytes / std::max<size_t>(row_bytes, 1), 1, chunk[0]);
    H5_CHECK(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()), "{}: cannot chunk", where);
    H5_CHECK(H5Pset_shuffle(dcpl.id()), "{}: cannot enable shuffle", where);
    H5_CHECK(H5Pset_deflate(dcpl.id(), static_cast<unsigned>(comp.level)), "{}: cannot enable deflate", where);
  }
  H5Handle ds(H5Dcreate2(loc, name.c_str(), ft.id(), space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT), H5Dclose);
  H5_CHECK(ds.id(), "{}: cannot create the dataset", where);
  if (n > 0) H5_CHECK(H5Dwrite(ds.id(), ft.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "{}: cannot write", where);
  h5_set_attr(ds.id(), kChecksumAttr, checksum_bytes(data, nbytes));
  if (dtype == DType::BF16) h5_set_attr(ds.id(), kDtypeAttr, "bfloat16");
  if (dtype == DType::BOOL) h5_set_attr(ds.id(), kDtypeAttr, "bool");
  H5_CHECK(ds.close(), "{}: cannot write", where);
}

void h5_write_tensor(hid_t loc, const std::string& name, const at::Tensor& t, const H5Compression& comp,
                     const std::string& where) {
  GLVQ_CHECK(t.defined() && t.device().is_cpu(), "{}: only defined CPU tensors can be stored", where);
  const at::Tensor c = t.contiguous();
  const std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
  h5_write_raw(loc, name, dtype_of(c.scalar_type()), shape, c.data_ptr(), c.numel() * c.element_size(), comp,
               where);
}

H5DatasetInfo h5_dataset_info(hid_t loc, const std::string& name, const std::string& where) {
  GLVQ_CHECK(h5_exists(loc, name), "{}: dataset '{}' is missing", where, name);
  H5Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  H5_CHECK(ds.id(), "{}: '{}' is not a readable dataset", where, name);
  H5DatasetInfo info;
  info.dtype = dataset_dtype(ds.id(), where);
  H5Handle space(H5Dget_space(ds.id()), H5Sclose);
  H5_CHECK(space.id(), "{}: cannot read the shape", where);
  const int rank = H5Sget_simple_extent_ndims(space.id());
  H5_CHECK(rank, "{}: cannot read the shape", where);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5_CHECK(H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr), "{}: cannot read the shape",
                         where);
  info.shape.assign(dims.begin(), dims.end());
  info.storage_bytes = H5Dget_storage_size(ds.id());
  return info;
}

at::Tensor h5_read_tensor(hid_t loc, const std::string& name, const std::string& where) {
  const H5DatasetInfo info = h5_dataset_info(loc, name, where);
  H5Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  H5_CHECK(ds.id(), "{}: cannot open the dataset", where);
  // The file's own type in little-endian order: no conversion except a byte swap for foreign files.
  H5Handle mt = make_type(H5Dget_type(ds.id()));
  H5_CHECK(mt.id(), "{}: cannot read the dataset type", where);
  H5Handle native = make_type(H5Tcopy(mt.id()));
  H5_CHECK(native.id(), "{}: cannot read the dataset type", where);
  H5_CHECK(H5Tset_order(native.id(), H5T_ORDER_LE), "{}: cannot read the dataset type", where);
  at::Tensor t = at::empty(info.shape, at::TensorOptions().dtype(scalar_type_of(info.dtype)));
  if (t.numel() > 0) {
    H5_CHECK(H5Dread(ds.id(), native.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()),
             "{}: cannot read the data (a damaged file?)", where);
  }
  GLVQ_CHECK(h5_has_attr(ds.id(), kChecksumAttr), "{}: the dataset has no '{}' checksum attribute", where,
             kChecksumAttr);
  const std::string stored = h5_get_attr_string(ds.id(), kChecksumAttr, where);
  const std::string actual = checksum_bytes(t.data_ptr(), info.nbytes());
  GLVQ_CHECK(stored == actual, "{}: the data is corrupt (xxh64 {} but {} was stored)", where, actual, stored);
  return t;
}

}  // namespace glvq
