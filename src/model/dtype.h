#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace glvq {

/// Element types that may appear in a checkpoint we read.
enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

/// Bytes per element.
size_t dtype_size(DType t);
/// The safetensors spelling ("F32", "BF16", ...).
std::string dtype_name(DType t);
/// Parses the safetensors spelling; returns false for anything unknown.
bool parse_dtype(const std::string& s, DType* out);

}  // namespace glvq
