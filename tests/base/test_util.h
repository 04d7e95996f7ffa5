#pragma once
/// Helpers shared by the base tests: a fresh temporary directory per test,
/// small file writes, and checks on glvq::Error messages.
#include "common/error.h"
#include "common/fs_util.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <string>

namespace glvq::test {

/// A new directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/glvq-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp(" << tmpl << ") failed";
    }
    path_ = tmpl;
  }
  ~TempDir() { remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  /// PATH/NAME.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Writes BYTES to PATH (replacing it).
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out.good()) << "cannot write " << path;
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Runs FN and checks it throws glvq::Error whose what() contains every one of
/// PARTS (file names, tensor names, field names, the diagnosis).
inline void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected glvq::Error, nothing was thrown";
  } catch (const glvq::Error& e) {
    const std::string what = e.what();
    for (const std::string& p : parts) {
      EXPECT_NE(what.find(p), std::string::npos) << "error message lacks \"" << p << "\": " << what;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected glvq::Error, got another exception: " << e.what();
  }
}

/// The repository root (tests run from it; GLVQ_SOURCE_DIR makes them work from elsewhere).
inline std::string source_dir() {
#ifdef GLVQ_SOURCE_DIR
  return GLVQ_SOURCE_DIR;
#else
  return ".";
#endif
}

}  // namespace glvq::test
