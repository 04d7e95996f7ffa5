// write_file_atomic, ensure_dir, read_file, and the per-rank log file.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"

namespace glvq {
namespace {

/// A fresh directory under $TMPDIR (or /tmp), removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/glvq-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    GLVQ_ASSERT(::mkdtemp(buf.data()) != nullptr);
    path_ = buf.data();
  }
  ~TempDir() {
    const std::string cmd = "chmod -R u+w '" + path_ + "' && rm -rf '" + path_ + "'";
    (void)std::system(cmd.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no glvq::Error thrown>";
}

TEST(FsUtil, AtomicWriteCreatesAndReplacesWithoutTempFile) {
  TempDir tmp;
  const std::string path = tmp.path() + "/report.json";
  write_file_atomic(path, "first version, longer than the second");
  EXPECT_EQ(read_file(path), "first version, longer than the second");
  write_file_atomic(path, "second");
  EXPECT_EQ(read_file(path), "second");
  write_file_atomic(path, "");
  EXPECT_EQ(read_file(path), "");
  EXPECT_EQ(list_dir(tmp.path()), std::vector<std::string>{"report.json"});
}

TEST(FsUtil, AtomicWriteBinaryBytes) {
  TempDir tmp;
  std::string bytes(300000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + 7);
  const std::string path = tmp.path() + "/blob.bin";
  write_file_atomic(path, bytes);
  EXPECT_EQ(read_file(path), bytes);
}

TEST(FsUtil, AtomicWriteIntoMissingDirectoryThrowsNamingPath) {
  TempDir tmp;
  const std::string path = tmp.path() + "/no/such/dir/report.json";
  const std::string msg = error_message([&] { write_file_atomic(path, "x"); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_TRUE(list_dir(tmp.path()).empty());
}

TEST(FsUtil, AtomicWriteIntoReadOnlyDirectoryThrows) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/ro";
  ensure_dir(dir);
  const std::string path = dir + "/report.json";
  write_file_atomic(path, "old");
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  // root (CAP_DAC_OVERRIDE) ignores permission bits: probe before asserting.
  if (::access(dir.c_str(), W_OK) == 0) {
    ::chmod(dir.c_str(), 0755);
    GTEST_SKIP() << "running with permission override (root?): a 0555 directory is still writable";
  }
  const std::string msg = error_message([&] { write_file_atomic(path, "new"); });
  ::chmod(dir.c_str(), 0755);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"report.json"});
}

TEST(FsUtil, FsyncAndRename) {
  TempDir tmp;
  const std::string tmp_path = tmp.path() + "/stats.h5.tmp";
  const std::string final_path = tmp.path() + "/stats.h5";
  write_file_atomic(tmp_path, "payload");
  fsync_and_rename(tmp_path, final_path);
  EXPECT_FALSE(file_exists(tmp_path));
  EXPECT_EQ(read_file(final_path), "payload");
  const std::string msg = error_message([&] { fsync_and_rename(tmp_path, final_path); });
  EXPECT_NE(msg.find(tmp_path), std::string::npos) << msg;
}

TEST(FsUtil, EnsureDirIsMkdirP) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/a/b/c";
  ensure_dir(dir);
  ensure_dir(dir);  // existing: fine
  ensure_dir(dir + "/");
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));

  write_file_atomic(tmp.path() + "/file", "x");
  const std::string bad = tmp.path() + "/file/sub";
  const std::string msg = error_message([&] { ensure_dir(bad); });
  EXPECT_NE(msg.find(bad), std::string::npos) << msg;
}

TEST(FsUtil, RequireWritableDirCreatesAndLeavesNoProbe) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out/run";
  require_writable_dir(dir, "output_dir");
  EXPECT_TRUE(list_dir(dir).empty());  // the probe file is gone
  write_file_atomic(dir + "/report.json", "old");
  require_writable_dir(dir, "output_dir");
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"report.json"});
  EXPECT_EQ(read_file(dir + "/report.json"), "old");

  write_file_atomic(tmp.path() + "/file", "x");
  const std::string msg = error_message([&] { require_writable_dir(tmp.path() + "/file", "output_dir"); });
  EXPECT_NE(msg.find("output_dir " + tmp.path() + "/file cannot be used"), std::string::npos) << msg;
  EXPECT_NE(msg.find("point output_dir at a writable directory"), std::string::npos) << msg;
}

TEST(FsUtil, RemoveTreeRemovesNestedTreesAndNeverFollowsLinks) {
  TempDir tmp;
  const std::string outside = tmp.path() + "/outside";
  ensure_dir(outside);
  write_file_atomic(outside + "/keep", "k");
  const std::string tree = tmp.path() + "/tree";
  ensure_dir(tree + "/a/b/c");
  write_file_atomic(tree + "/top", "t");
  write_file_atomic(tree + "/a/b/c/deep", "d");
  ASSERT_EQ(::symlink(outside.c_str(), (tree + "/a/link").c_str()), 0);
  EXPECT_TRUE(remove_tree(tree));
  EXPECT_FALSE(file_exists(tree));
  EXPECT_EQ(read_file(outside + "/keep"), "k");  // the link went, not what it points at
  EXPECT_TRUE(remove_tree(tree));                // nothing there: nothing to do
  write_file_atomic(tmp.path() + "/file", "x");
  EXPECT_TRUE(remove_tree(tmp.path() + "/file"));
  EXPECT_FALSE(file_exists(tmp.path() + "/file"));
  // An entry that cannot be removed: false, and the tree is still there.
  ensure_dir(tree + "/locked/sub");
  ::chmod((tree + "/locked").c_str(), 0555);
  if (::geteuid() != 0) {
    EXPECT_FALSE(remove_tree(tree));
    EXPECT_TRUE(file_exists(tree + "/locked/sub"));
  }
  ::chmod((tree + "/locked").c_str(), 0755);
  EXPECT_TRUE(remove_tree(tree));
}

TEST(FsUtil, FileBytesInSumsRegularFilesOnly) {
  TempDir tmp;
  EXPECT_EQ(file_bytes_in(tmp.path() + "/absent"), 0u);
  write_file_atomic(tmp.path() + "/a", std::string(1000, 'a'));
  write_file_atomic(tmp.path() + "/b", std::string(234, 'b'));
  ensure_dir(tmp.path() + "/sub");
  write_file_atomic(tmp.path() + "/sub/c", std::string(5000, 'c'));  // not directly in the directory
  EXPECT_EQ(file_bytes_in(tmp.path()), 1234u);
}

TEST(FsUtil, FreeBytesIsPositiveAndBoundedByTheFileSystem) {
  TempDir tmp;
  struct statvfs st;
  ASSERT_EQ(::statvfs(tmp.path().c_str(), &st), 0);
  const uint64_t free = free_bytes(tmp.path());
  EXPECT_GT(free, 0u);
  EXPECT_LE(free, uint64_t(st.f_blocks) * st.f_frsize);
  const std::string msg = error_message([&] { free_bytes(tmp.path() + "/absent"); });
  EXPECT_NE(msg.find(tmp.path() + "/absent"), std::string::npos) << msg;
}

TEST(FsUtil, ReadFileMissingNamesPath) {
  TempDir tmp;
  const std::string path = tmp.path() + "/missing.txt";
  EXPECT_FALSE(file_exists(path));
  const std::string msg = error_message([&] { read_file(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  const std::string dmsg = error_message([&] { read_file(tmp.path()); });
  EXPECT_NE(dmsg.find(tmp.path()), std::string::npos) << dmsg;
}

TEST(Log, RankFileLinesHaveTimestampRankAndLevel) {
  TempDir tmp;
  testing::internal::CaptureStderr();  // rank 3 prints its warning and error; keep test output clean
  log_init(tmp.path(), 3, 4);
  log_info("hello {}", 42);
  log_debug("details");
  log_warn("careful");
  log_close();
  log_init(tmp.path(), 3, 4);  // a resumed run appends
  log_error("after resume");
  log_close();
  testing::internal::GetCapturedStderr();

  const std::string text = read_file(tmp.path() + "/logs/rank-3.log");
  std::vector<std::string> lines;
  size_t begin = 0;
  for (size_t nl; (nl = text.find('\n', begin)) != std::string::npos; begin = nl + 1)
    lines.push_back(text.substr(begin, nl - begin));
  EXPECT_EQ(begin, text.size()) << "last line not terminated";
  ASSERT_EQ(lines.size(), 4u) << text;
  const char* expected[] = {" [rank 3] INFO hello 42", " [rank 3] DEBUG details", " [rank 3] WARN careful",
                            " [rank 3] ERROR after resume"};
  for (size_t i = 0; i < lines.size(); ++i) {
    // 2026-11-23T17:40:01Z is 20 characters.
    ASSERT_GT(lines[i].size(), 20u) << lines[i];
    EXPECT_EQ(lines[i][4], '-') << lines[i];
    EXPECT_EQ(lines[i][10], 'T') << lines[i];
    EXPECT_EQ(lines[i][19], 'Z') << lines[i];
    EXPECT_EQ(lines[i].substr(20), expected[i]);
  }
}

TEST(Log, WriteBeforeInitGoesToStderr) {
  testing::internal::CaptureStderr();
  log_info("no log file yet");
  log_debug("hidden debug");
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("no log file yet"), std::string::npos) << err;
  EXPECT_EQ(err.find("hidden debug"), std::string::npos) << err;
}

TEST(Log, OtherRanksPrintOnlyWarningsWithRankPrefix) {
  TempDir tmp;
  log_init(tmp.path(), 2, 4);
  testing::internal::CaptureStderr();
  log_info("quiet info");
  log_warn("loud warning");
  const std::string err = testing::internal::GetCapturedStderr();
  log_close();
  EXPECT_EQ(err.find("quiet info"), std::string::npos) << err;
  EXPECT_NE(err.find("[rank 2]"), std::string::npos) << err;
  EXPECT_NE(err.find("loud warning"), std::string::npos) << err;
}

TEST(Log, ProgressFinalLineOnRankZero) {
  TempDir tmp;
  log_init(tmp.path(), 0, 1);
  testing::internal::CaptureStderr();
  Progress p("calibrate", 4, 1000.0);
  for (int i = 0; i < 4; ++i) p.step(1, "loss 0.5");
  p.done("peak 1 GiB");
  const std::string err = testing::internal::GetCapturedStderr();
  log_close();
  // Rate-limited: only the final line is printed, with the stage, counts and extra.
  EXPECT_NE(err.find("calibrate  4/4 (100.0%)  elapsed 0:00"), std::string::npos) << err;
  EXPECT_NE(err.find("peak 1 GiB"), std::string::npos) << err;
  EXPECT_EQ(err.find("loss 0.5"), std::string::npos) << err;
  const std::string log = read_file(tmp.path() + "/logs/rank-0.log");
  EXPECT_NE(log.find("[rank 0] INFO calibrate  4/4"), std::string::npos) << log;
  EXPECT_GE(p.elapsed_s(), 0.0);
}

TEST(Log, PeakRssIsPlausible) {
  const size_t rss = peak_rss_bytes();
  EXPECT_GT(rss, size_t{1} << 20);
  EXPECT_LT(rss, size_t{1} << 40);
}

}  // namespace
}  // namespace glvq
