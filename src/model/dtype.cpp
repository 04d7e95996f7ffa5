#include "model/dtype.h"

#include "common/error.h"

namespace glvq {
namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};

// Spellings as in the safetensors format (safetensors/src/tensor.rs).
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::F64, "F64", 8}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType t) {
  for (const DTypeInfo& d : kDTypes) {
    if (d.type == t) return d;
  }
  GLVQ_ASSERT(false && "DType value outside the enum");
  return kDTypes[0];
}

}  // namespace

size_t dtype_size(DType t) { return info(t).size; }

std::string dtype_name(DType t) { return info(t).name; }

bool parse_dtype(const std::string& s, DType* out) {
  for (const DTypeInfo& d : kDTypes) {
    if (s == d.name) {
      if (out) *out = d.type;
      return true;
    }
  }
  return false;
}

}  // namespace glvq
