#pragma once
/// Durable file writes: never leave a half-written output that looks valid.
#include <cstdint>
#include <string>

namespace glvq {

/// Writes BYTES to PATH through PATH.tmp-<pid>, fsyncs the file and its
/// directory, then renames. Throws glvq::Error naming PATH on failure (disk
/// full, read-only, missing directory); the previous PATH is left untouched.
void write_file_atomic(const std::string& path, const std::string& bytes);
/// fsyncs a file that was written by other means (e.g. HDF5), then renames it.
void fsync_and_rename(const std::string& tmp_path, const std::string& final_path);
/// mkdir -p; throws naming the directory when it cannot be created.
void ensure_dir(const std::string& dir);
/// mkdir -p, then creates and removes a probe file in DIR: a read-only or
/// otherwise unwritable DIR fails here, before any work, naming WHAT (e.g. the
/// config key) and DIR, and nothing in DIR is changed.
void require_writable_dir(const std::string& dir, const std::string& what);
/// Bytes an unprivileged writer can still use on DIR's file system (statvfs).
uint64_t free_bytes(const std::string& dir);
/// Total size of the regular files directly in DIR (0 when DIR does not exist).
uint64_t file_bytes_in(const std::string& dir);
bool file_exists(const std::string& path);
/// rm -rf PATH (a file, a directory tree, or nothing): true when nothing is left. Symbolic
/// links are removed, never followed. POSIX calls rather than std::filesystem::remove_all,
/// whose copy exported by pip LibTorch 2.11's libtorch.so (which our binaries resolve to)
/// jumps through a null pointer.
bool remove_tree(const std::string& path);
/// Whole file as bytes; throws naming the file.
std::string read_file(const std::string& path);

}  // namespace glvq
