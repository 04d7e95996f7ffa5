#include "common/fs_util.h"

#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace glvq {
namespace {

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// Closes FD on scope exit unless released (error paths must not leak descriptors).
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  /// Closes now and reports close()'s errno (NFS and some full disks report errors only here).
  int close_now() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// A directory entry (create, rename) is durable only after the directory itself is fsynced.
void fsync_dir(const std::string& dir, const std::string& for_path) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  GLVQ_CHECK(fd >= 0, "cannot write {}: cannot open directory {}: {}", for_path, dir, std::strerror(errno));
  FdGuard guard(fd);
  // Some file systems (and /proc-like mounts) refuse fsync on directories; that is not data loss.
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    GLVQ_FAIL("cannot write {}: fsync of directory {} failed: {}", for_path, dir, std::strerror(errno));
  }
}

void write_all(int fd, const std::string& bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      GLVQ_FAIL("cannot write {}: {}", path, std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  GLVQ_CHECK(fd >= 0, "cannot write {}: {}", path, std::strerror(errno));
  FdGuard guard(fd);
  try {
    write_all(fd, bytes, path);
    GLVQ_CHECK(::fsync(fd) == 0, "cannot write {}: fsync failed: {}", path, std::strerror(errno));
    const int err = guard.close_now();
    GLVQ_CHECK(err == 0, "cannot write {}: {}", path, std::strerror(err));
    GLVQ_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot write {}: rename from {} failed: {}", path, tmp,
               std::strerror(errno));
  } catch (...) {
    // The old PATH is untouched; remove the partial temporary so nothing half-written remains.
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(parent_dir(path), path);
}

void fsync_and_rename(const std::string& tmp_path, const std::string& final_path) {
  {
    const int fd = ::open(tmp_path.c_str(), O_RDONLY | O_CLOEXEC);
    GLVQ_CHECK(fd >= 0, "cannot write {}: cannot open {}: {}", final_path, tmp_path, std::strerror(errno));
    FdGuard guard(fd);
    GLVQ_CHECK(::fsync(fd) == 0, "cannot write {}: fsync of {} failed: {}", final_path, tmp_path,
               std::strerror(errno));
  }
  GLVQ_CHECK(::rename(tmp_path.c_str(), final_path.c_str()) == 0, "cannot write {}: rename from {} failed: {}",
             final_path, tmp_path, std::strerror(errno));
  fsync_dir(parent_dir(final_path), final_path);
}

void ensure_dir(const std::string& dir) {
  GLVQ_CHECK(!dir.empty(), "cannot create directory: empty path");
  // Create every prefix in turn; EEXIST is fine as long as it is a directory.
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string prefix = dir.substr(0, pos);
    if (prefix.empty() || prefix == "." || prefix == "..") continue;
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      GLVQ_FAIL("cannot create directory {}: {} (at {})", dir, std::strerror(errno), prefix);
    }
  }
  struct stat st;
  GLVQ_CHECK(::stat(dir.c_str(), &st) == 0, "cannot create directory {}: {}", dir, std::strerror(errno));
  GLVQ_CHECK(S_ISDIR(st.st_mode), "cannot create directory {}: a file of that name exists", dir);
}

void require_writable_dir(const std::string& dir, const std::string& what) {
  try {
    ensure_dir(dir);
  } catch (const Error& e) {
    GLVQ_FAIL("{} {} cannot be used: {}; point {} at a writable directory", what, dir, e.message(), what);
  }
  const std::string probe = fmt::format("{}/.glvq-write-probe-{}", dir, ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  GLVQ_CHECK(fd >= 0, "{} {} is not writable: {}; point {} at a writable directory (earlier results there are "
             "left as they are)", what, dir, std::strerror(errno), what);
  ::close(fd);
  ::unlink(probe.c_str());
}

uint64_t free_bytes(const std::string& dir) {
  struct statvfs st;
  GLVQ_CHECK(::statvfs(dir.c_str(), &st) == 0, "cannot query free space of {}: {}", dir, std::strerror(errno));
  return uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
}

uint64_t file_bytes_in(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  uint64_t total = 0;
  while (const dirent* e = ::readdir(d)) {
    struct stat st;
    const std::string path = dir + "/" + e->d_name;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += uint64_t(st.st_size);
  }
  ::closedir(d);
  return total;
}

bool remove_tree(const std::string& path) {
  // FTW_DEPTH: children before their directory; FTW_PHYS: a link is an entry, not a tree.
  const auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p) == 0 ? 0 : -1; };
  if (::nftw(path.c_str(), remove_one, 64, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) return false;
  struct stat st;
  return ::lstat(path.c_str(), &st) != 0;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  GLVQ_CHECK(fd >= 0, "cannot read {}: {}", path, std::strerror(errno));
  FdGuard guard(fd);
  struct stat st;
  GLVQ_CHECK(::fstat(fd, &st) == 0, "cannot read {}: {}", path, std::strerror(errno));
  GLVQ_CHECK(!S_ISDIR(st.st_mode), "cannot read {}: {}", path, std::strerror(EISDIR));
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      GLVQ_FAIL("cannot read {}: {}", path, std::strerror(errno));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace glvq
