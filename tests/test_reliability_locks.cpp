// What QuantLab promises (docs/RELIABILITY.md), from the first hostile probe (test_reliability.cpp):
// the user's linked logs folder and data folder are never replaced or written to, and one process at
// a time trains an experiment (its lock, a killed holder's, a holder on another machine). Each test
// fails on the code before its fix.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "quantlab/experiment/listing.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/util/error.h"
#include "reliability_home.h"
#include "test_util.h"
#include "toy_home.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using namespace reliability;  // NOLINT(google-build-using-namespace): the toy folder's helpers

// 3. A logs folder linked to the user's own folder is used where it points; a dangling link stops
// the run with the path it points to; neither is replaced.
TEST(Reliability, LinksOfTheUserAreNeverReplaced) {
  Home home(1);
  TempDir mine;
  fs::create_directory_symlink(mine.path(), home.dir.path() + "/Toy/logs");
  run(home.options());
  EXPECT_TRUE(fs::is_symlink(home.dir.path() + "/Toy/logs"));
  EXPECT_EQ(fs::read_symlink(home.dir.path() + "/Toy/logs").string(), mine.path());
  EXPECT_TRUE(fs::exists(mine.path() + "/exp001/saves/last.ckpt"));
  // An unmounted drive: the link dangles.
  fs::remove(home.dir.path() + "/Toy/logs");
  fs::create_directory_symlink("/nonexistent-drive/quantlab/logs", home.dir.path() + "/Toy/logs");
  const std::string e = error_of(home.options());
  EXPECT_NE(e.find("is a link to /nonexistent-drive/quantlab/logs, which does not exist"), std::string::npos) << e;
  EXPECT_EQ(fs::read_symlink(home.dir.path() + "/Toy/logs").string(), "/nonexistent-drive/quantlab/logs");
  EXPECT_FALSE(fs::exists(home.dir.path() + "/storage/QuantLab/Toy/logs"));
  // Nor do list, a resume or compare take it for a problem without experiments.
  std::ostringstream table;
  const std::string listed = testing::error_of([&] { list_experiments(home.dir.path(), "Toy", table); });
  EXPECT_NE(listed.find("is a link to /nonexistent-drive/quantlab/logs, which does not exist"), std::string::npos)
      << listed;
  auto resume = home.options();
  resume.exp_id = 1;
  EXPECT_NE(error_of(resume).find("which does not exist (a drive that is not mounted?)"), std::string::npos)
      << error_of(resume);
}

// 4. One process at a time trains an experiment; a lock left by a killed process does not block.
TEST(Reliability, AnExperimentIsLockedByTheProcessThatTrainsIt) {
  TempDir dir;
  {
    ExperimentLock held(dir.path(), "experiment 7");
    try {
      ExperimentLock second(dir.path(), "experiment 7");
      FAIL() << "a second lock was granted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("experiment 7 is in use by another QuantLab process (PID " +
                                           std::to_string(getpid()) + ")"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(ExperimentLock::holder(dir.path()), getpid());
  }
  EXPECT_NO_THROW(ExperimentLock(dir.path(), "experiment 7"));  // released with its holder
  // A process killed while holding the lock leaves a stale file that blocks nothing.
  const pid_t child = fork();
  if (child == 0) {
    ExperimentLock held(dir.path(), "experiment 7");
    raise(SIGKILL);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(ExperimentLock::holder(dir.path()), 0);
  EXPECT_NO_THROW(ExperimentLock(dir.path(), "experiment 7"));
  // A look at the lock (quantlab list, compare, a sweep: a shared lock for a moment) does not make
  // a launch at that moment fail.
  {
    const int probe = ::open((dir.path() + "/.lock").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_EQ(::flock(probe, LOCK_SH | LOCK_NB), 0);
    std::thread release([probe] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ::close(probe);
    });
    EXPECT_NO_THROW(ExperimentLock(dir.path(), "experiment 7"));
    release.join();
  }
  // A holder on another machine (a shared file system) is named with its host; a lock held before
  // its PID is written is still held.
  {
    const int other = ::open((dir.path() + "/.lock").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_EQ(::flock(other, LOCK_EX | LOCK_NB), 0);
    ASSERT_EQ(::ftruncate(other, 0), 0);
    EXPECT_EQ(ExperimentLock::holder(dir.path()), -1);
    const std::string text = "4242 node7\n";
    ASSERT_EQ(::pwrite(other, text.data(), text.size(), 0), static_cast<ssize_t>(text.size()));
    EXPECT_EQ(ExperimentLock::holder(dir.path()), 4242);
    try {
      ExperimentLock second(dir.path(), "experiment 7");
      ADD_FAILURE() << "a held lock was granted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("experiment 7 is in use by another QuantLab process (PID 4242 on node7)"),
                std::string::npos)
          << e.what();
    }
    ::close(other);
  }
}

TEST(Reliability, ASecondProcessResumingTheSameExperimentIsRefused) {
  Home home(200, 960);
  TempDir tmp;
  const pid_t first = testing::spawn(home.args("--ckpt_every=0"), tmp.path() + "/first.log");
  for (int i = 0; i < 600 && !fs::exists(home.saves(1) + "/last.ckpt"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(home.saves(1) + "/last.ckpt")) << testing::slurp(tmp.path() + "/first.log");
  std::string out;
  EXPECT_EQ(testing::run_cli(home.args("--exp_id=1"), out), 1);
  EXPECT_NE(out.find("experiment 1 is in use by another QuantLab process (PID " + std::to_string(first) + ")"),
            std::string::npos)
      << out;
  std::ostringstream table;
  list_experiments(home.dir.path(), "Toy", table);
  EXPECT_NE(table.str().find("running (PID " + std::to_string(first) + ")"), std::string::npos) << table.str();
  kill(first, SIGTERM);
  EXPECT_EQ(testing::wait_exit(first), 143);  // SIGTERM: 128 + 15
  const std::string log = testing::slurp(tmp.path() + "/first.log");
  EXPECT_NE(log.find("interrupted by SIGTERM"), std::string::npos) << log;
  // The resume hint keeps every setting that matters, --ckpt_every included.
  EXPECT_NE(log.find("resume with: quantlab --problem=Toy --topology=MLP --exp_id=1 --load=last --home=" +
                     home.dir.path() + " --ckpt_every=0 --device=cpu --threads=1"),
            std::string::npos)
      << log;
}

// 5. A data folder of the user's with a file missing is an error naming the file; nothing is
// written into it.
TEST(Reliability, AUsersDataFolderIsNeverWrittenTo) {
  Home home(1);
  // FashionMNIST with a misnamed training file: before the fix, the Debian files were linked in.
  fs::create_directories(home.dir.path() + "/FashionMNIST");
  std::ofstream(home.dir.path() + "/FashionMNIST/config.json") << home.cfg.dump();
  testing::write_toy_idx_problem(home.dir.path() + "/FashionMNIST/data", 40, 20, 4, true);
  fs::rename(home.dir.path() + "/FashionMNIST/data/train-images-idx3-ubyte.gz",
             home.dir.path() + "/FashionMNIST/data/train-images.gz");
  const auto before = tree(home.dir.path() + "/FashionMNIST/data");
  auto o = home.options();
  o.problem = "FashionMNIST";
  const std::string e = error_of(o);
  EXPECT_NE(e.find("train-images-idx3-ubyte[.gz]: no such file"), std::string::npos) << e;
  EXPECT_EQ(tree(home.dir.path() + "/FashionMNIST/data"), before);
  EXPECT_FALSE(fs::exists(home.dir.path() + "/FashionMNIST/logs"));
}

}  // namespace
}  // namespace quantlab
