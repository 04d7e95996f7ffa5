#pragma once
/// splitmix64: a fixed, portable generator (std distributions differ between
/// libraries), for anything that must draw the same numbers on every platform.
#include <cstdint>

namespace glvq {

/// The next value of the sequence whose state is S (advanced).
inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace glvq
