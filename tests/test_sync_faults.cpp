// What QuantLab does when the disk or the file system misbehaves (docs/RELIABILITY.md): a sync that
// fails, a folder that cannot be synced, a file system that honours O_NONBLOCK on regular files;
// and what is on file at the moment a file gets its name (where a kill may land).
// Such faults cannot be caused on a healthy disk, so this executable puts its own fsync(), read()
// and rename() in front of the C library's (the library's calls resolve to the executable's first)
// and fails or observes them on demand; otherwise they pass every call through. Each test fails on
// the code before its fix.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "quantlab/data/image_decode.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/util/error.h"
#include "quantlab/util/files.h"
#include "event_decoder.h"
#include "reliability_home.h"
#include "test_util.h"

namespace {

// The faults asked for, and what the calls saw. One thread at a time uses them (the tests'
// own calls); the library's other threads, if any, only pass through.
struct Faults {
  int file_sync_error = 0;       // errno for fsync() of a regular file, 0: none
  int folder_sync_error = 0;     // errno for fsync() of a folder
  std::string failing_folder;    // when set, the only folder whose fsync() fails
  bool honour_nonblock = false;  // read() of a regular file opened O_NONBLOCK: EAGAIN, as a FUSE daemon may
  int regular_reads = 0;         // read() calls on regular files while honour_nonblock is set
  std::string watch;             // a path whose existence each fsync() notes
  struct Sync {
    std::string path;  // of the file or folder synced
    bool watch_existed;
  };
  std::vector<Sync> synced;  // the fsync() calls, in order
  // Called after each successful rename() with the new name.
  std::function<void(const std::string&)> renamed;
};
Faults faults;

std::string fd_path(int fd) {
  char link[64], target[PATH_MAX];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string();
}

template <typename F>
F real(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" int fsync(int fd) {
  static const auto next = real<int (*)(int)>("fsync");
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    const std::string path = fd_path(fd);
    struct stat w {};
    faults.synced.push_back({path, !faults.watch.empty() && ::lstat(faults.watch.c_str(), &w) == 0});
    const bool folder = S_ISDIR(st.st_mode) && (faults.failing_folder.empty() || faults.failing_folder == path);
    const int err = folder ? faults.folder_sync_error : S_ISREG(st.st_mode) ? faults.file_sync_error : 0;
    if (err) {
      errno = err;
      return -1;
    }
  }
  return next(fd);
}

extern "C" ssize_t read(int fd, void* buf, size_t n) {
  static const auto next = real<ssize_t (*)(int, void*, size_t)>("read");
  if (faults.honour_nonblock) {
    struct stat st {};
    const int flags = ::fcntl(fd, F_GETFL);
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      ++faults.regular_reads;
      if (flags >= 0 && (flags & O_NONBLOCK)) {
        errno = EAGAIN;
        return -1;
      }
    }
  }
  return next(fd, buf, n);
}

extern "C" int rename(const char* from, const char* to) {
  static const auto next = real<int (*)(const char*, const char*)>("rename");
  const int r = next(from, to);
  if (r == 0 && faults.renamed) faults.renamed(to);
  return r;
}

namespace quantlab {
namespace {

namespace fs = std::filesystem;

// Resets the faults around each test.
class SyncFaults : public ::testing::Test {
 protected:
  void SetUp() override { faults = Faults{}; }
  void TearDown() override { faults = Faults{}; }
  testing::TempDir dir_;
};

// Whether `path` was synced while `faults.watch` existed (`existed`) or did not exist yet.
bool synced_while(const std::string& path, bool existed) {
  const std::string want = fs::weakly_canonical(path).string();
  for (const auto& s : faults.synced)
    if (s.path == want && s.watch_existed == existed) return true;
  return false;
}

// An exported file's contents reach the disk before it gets its name, and its name after: a power
// cut never leaves an empty model under the name, nor loses the name of a finished export.
TEST_F(SyncFaults, PublishedFilesAreSyncedBeforeTheyGetTheirName) {
  for (const bool replace : {false, true}) {
    const std::string path = dir_.path() + "/model" + (replace ? "-r" : "") + ".qlm";
    const std::string tmp = temporary_beside(path);
    std::ofstream(tmp) << "weights";
    faults.synced.clear();
    faults.watch = path;
    publish_file(tmp, path, replace);
    EXPECT_TRUE(synced_while(tmp, false)) << "replace=" << replace;
    EXPECT_TRUE(synced_while(dir_.path(), true)) << "replace=" << replace;
    EXPECT_EQ(testing::slurp(path), "weights");
    EXPECT_FALSE(fs::exists(tmp));
  }
}

// A file whose sync fails is not published: an error, no file under the name, no leftover.
TEST_F(SyncFaults, AFileWhoseSyncFailsIsNotPublished) {
  const std::string path = dir_.path() + "/model.qlm";
  const std::string tmp = temporary_beside(path);
  std::ofstream(tmp) << "weights";
  faults.file_sync_error = EIO;
  try {
    publish_file(tmp, path, false);
    ADD_FAILURE() << "published without a sync";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("model.qlm: cannot write (Input/output error)"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(tmp));
}

// A new name whose folder fails to sync is removed (the export can be run again); a file QuantLab
// replaces keeps its new version. Both are errors.
TEST_F(SyncFaults, ANameWhoseFolderCannotBeSyncedIsAnError) {
  for (const bool replace : {false, true}) {
    const std::string path = dir_.path() + "/labels" + (replace ? "-r" : "") + ".txt";
    const std::string tmp = temporary_beside(path);
    std::ofstream(tmp) << "3\n";
    faults.folder_sync_error = EIO;
    EXPECT_THROW(publish_file(tmp, path, replace), IoError) << "replace=" << replace;
    faults.folder_sync_error = 0;
    EXPECT_EQ(fs::exists(path), replace);
    EXPECT_FALSE(fs::exists(tmp));
  }
}

// A new experiment's folders are synced: the hidden one after its config is written, the logs
// folder after the rename to expNNN. A disk that fails either (EIO) stops the launch, and the
// experiment, which may not survive a power cut, is removed instead of trained.
TEST_F(SyncFaults, ANewExperimentWhoseFolderCannotBeSyncedIsNotMade) {
  for (const bool logs_folder_only : {false, true}) {
    faults.folder_sync_error = EIO;
    faults.failing_folder = logs_folder_only ? fs::canonical(dir_.path()).string() : "";
    try {
      experiment::Logbook::create(dir_.path(), nlohmann::json{{"a", 1}});
      ADD_FAILURE() << "an experiment made on a disk that failed to sync it";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find(": cannot sync the folder (Input/output error)"), std::string::npos)
          << e.what();
    }
    // Neither exp001 nor the hidden folder it was made in.
    EXPECT_TRUE(fs::is_empty(dir_.path())) << "logs_folder_only=" << logs_folder_only;
  }
}

// A file system that cannot sync folders at all (EINVAL) is used as it is.
TEST_F(SyncFaults, AFileSystemThatCannotSyncFoldersIsUsedAsItIs) {
  faults.folder_sync_error = EINVAL;
  const auto book = experiment::Logbook::create(dir_.path(), nlohmann::json{{"a", 1}});
  EXPECT_EQ(book.id(), 1);
  EXPECT_TRUE(fs::exists(dir_.path() + "/exp001/config.json"));
}

// write_file_atomically (statistics, configs, checkpoints' metadata): a failed sync leaves the
// previous version as it was and no temporary file.
TEST_F(SyncFaults, AFailedSyncKeepsThePreviousVersion) {
  const std::string file = dir_.path() + "/stats.json";
  experiment::write_file_atomically(file, "old");
  faults.file_sync_error = EIO;
  EXPECT_THROW(experiment::write_file_atomically(file, "new"), IoError);
  faults.file_sync_error = 0;
  EXPECT_EQ(testing::slurp(file), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 1);
}

// Images are opened O_NONBLOCK (a FIFO among them is refused instead of blocking the open) and
// then read blocking: a file system that honours O_NONBLOCK on regular files (a FUSE daemon may)
// would otherwise answer EAGAIN and stop the run on a readable image.
TEST_F(SyncFaults, ImagesAreReadBlockingOnAFileSystemThatHonoursNonBlock) {
  const std::string file = dir_.path() + "/a.JPEG";
  std::ofstream(file, std::ios::binary) << std::string(5000, 'x');
  faults.honour_nonblock = true;
  EXPECT_EQ(data::read_file_bytes(file).size(), 5000U);
  EXPECT_GT(faults.regular_reads, 0);  // the library's reads went through the fault
  // The fault itself: a read of a file still O_NONBLOCK fails.
  const int fd = ::open(file.c_str(), O_RDONLY | O_NONBLOCK);
  char c = 0;
  EXPECT_EQ(::read(fd, &c, 1), -1);
  ::close(fd);
}

// An epoch's TensorBoard record is on file before its checkpoint gets its name. The other way
// round, a SIGKILL between the two (random kills landed there in 7 of 9 runs) lost the epoch from
// TensorBoard for good: the resume starts after the checkpoint's epoch. This way, a kill before
// the name leaves a record that the resume's session restart at that epoch replaces.
TEST_F(SyncFaults, AnEpochIsLoggedBeforeItsCheckpointGetsItsName) {
  reliability::Home home(3);
  const std::string stats = home.logs() + "/exp001/stats";
  std::vector<int64_t> logged;  // the last train_loss step on file at each rename to last.ckpt
  faults.renamed = [&](const std::string& to) {
    if (to.size() < 16 || to.compare(to.size() - 16, 16, "/saves/last.ckpt") != 0) return;
    int64_t last = 0;
    for (const auto& e : fs::directory_iterator(stats)) {
      if (!e.is_regular_file()) continue;
      const testing::Decoded d = testing::decode(e.path().string());
      if (d.scalars.count("train_loss")) last = std::max(last, d.scalars.at("train_loss").rbegin()->first);
    }
    logged.push_back(last);
  };
  reliability::run(home.options());
  faults.renamed = nullptr;
  EXPECT_EQ(logged, (std::vector<int64_t>{1, 2, 3}));
}

}  // namespace
}  // namespace quantlab
