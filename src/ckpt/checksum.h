#pragma once
/// Content checksums for provenance (model tensors, configs) and for every
/// dataset glvq writes. The hash is XXH64 with seed 0, so any tool with an
/// xxhash binding (python: xxhash.xxh64(data).hexdigest()) can recompute it.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace glvq {

/// XXH64 (seed 0) of N bytes at DATA; memory speed (several GB/s per core).
uint64_t xxh64(const void* data, size_t n, uint64_t seed = 0);

/// xxh64 of N bytes at DATA as 16 lowercase hex digits.
std::string checksum_bytes(const void* data, size_t n);

/// checksum_bytes of J.dump(): object keys are sorted and numbers printed
/// round-trip exactly, so equal JSON values always hash equal.
std::string hash_json(const nlohmann::json& j);

}  // namespace glvq
