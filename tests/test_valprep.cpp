// valprep: sorting ImageNet's flat validation folder into class folders, all or nothing, across
// file systems, from every label format, and from the command line.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "quantlab/data/valprep.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

using testing::TempDir;

// Into a folder on another file system (here: from /dev/shm, a tmpfs, to the test's folder), where
// a hard link cannot move an image: each is copied to a hidden .part file beside its destination,
// linked into place and removed from the flat folder; nothing partial stays behind.
TEST(Valprep, MovesAcrossFileSystemsWithoutPartialFiles) {
  TempDir dir;
  struct stat a {
  }, b{};
  if (::stat("/dev/shm", &a) != 0 || ::stat(dir.path().c_str(), &b) != 0 || a.st_dev == b.st_dev)
    GTEST_SKIP() << "no /dev/shm on a file system of its own here";
  const std::string val = "/dev/shm/quantlab-valprep-" + std::to_string(::getpid());
  std::filesystem::create_directories(val);
  for (int i = 1; i <= 2; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/ILSVRC2012_val_%08d.JPEG", i);
    std::ofstream(val + name) << "img" << i;
  }
  std::ofstream(dir.path() + "/labels.txt") << "ILSVRC2012_val_00000001 n01440764\nILSVRC2012_val_00000002 n01443537\n";
  const std::string out = dir.path() + "/sorted";
  const auto r = data::sort_validation_images(val, dir.path() + "/labels.txt", out);
  EXPECT_EQ(r.moved, 2);
  EXPECT_EQ(testing::slurp(out + "/n01440764/ILSVRC2012_val_00000001.JPEG"), "img1");
  EXPECT_EQ(testing::slurp(out + "/n01443537/ILSVRC2012_val_00000002.JPEG"), "img2");
  EXPECT_FALSE(std::filesystem::exists(val + "/ILSVRC2012_val_00000001.JPEG"));
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::recursive_directory_iterator(out))
    if (e.path().filename().string().front() == '.') left.push_back(e.path().string());
  EXPECT_TRUE(left.empty()) << left.front();
  std::filesystem::remove_all(val);
}

// A label file with a byte order mark (a Kaggle CSV saved by a spreadsheet), a class folder's name
// taken by a file (refused before anything moves: one image was moved before the error), and links
// to images (a relative one, moved a folder deeper, led nowhere).
TEST(Valprep, ByteOrderMarksFilesInTheWayAndLinkedImages) {
  namespace fs = std::filesystem;
  TempDir dir;
  const std::string val = dir.path() + "/val", real = dir.path() + "/real";
  fs::create_directories(val);
  fs::create_directories(real);
  std::ofstream(real + "/a.JPEG") << "img-a";
  std::ofstream(real + "/b.JPEG") << "img-b";
  fs::create_symlink("../real/a.JPEG", val + "/a.JPEG");  // relative
  fs::create_symlink(real + "/b.JPEG", val + "/b.JPEG");  // absolute
  std::ofstream(dir.path() + "/labels.csv")
      << "\xEF\xBB\xBFImageId,PredictionString\r\na,n01 1 2 3 4\r\nb,n02 1 2 3 4\r\n";
  std::ofstream(val + "/n02") << "a file where a class folder goes";
  try {
    data::sort_validation_images(val, dir.path() + "/labels.csv", val);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(val + "/n02: not a folder, where the class folder goes; nothing was moved"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::is_symlink(val + "/a.JPEG"));                         // nothing moved
  EXPECT_THROW(data::sort_validation_images(val, real, val), IoError);  // --labels=<a folder>
  fs::remove(val + "/n02");
  const auto r = data::sort_validation_images(val, dir.path() + "/labels.csv", val);
  EXPECT_EQ(r.moved, 2);
  EXPECT_EQ(testing::slurp(val + "/n01/a.JPEG"), "img-a");
  EXPECT_EQ(testing::slurp(val + "/n02/b.JPEG"), "img-b");
  EXPECT_FALSE(fs::exists(fs::symlink_status(val + "/a.JPEG")));
}

TEST(Valprep, SortsTheFlatFolderAndRefusesToOverwrite) {
  TempDir dir;
  const std::string val = dir.path() + "/val";
  std::filesystem::create_directories(val);
  const char* wnids[] = {"n01440764", "n01443537", "n01440764", "n01484850"};
  for (int i = 1; i <= 4; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/ILSVRC2012_val_%08d.JPEG", i);
    std::ofstream(val + name) << "img" << i;
  }
  std::ofstream(val + "/README") << "not listed";
  std::ofstream(dir.path() + "/LOC_val_solution.csv") << "ImageId,PredictionString\n"
                                                      << "ILSVRC2012_val_00000001,n01440764 10 20 30 40\n"
                                                      << "ILSVRC2012_val_00000002,n01443537 1 2 3 4 n01443537 5 6 7 8\n"
                                                      << "ILSVRC2012_val_00000003,n01440764 1 2 3 4\n";
  std::ofstream(dir.path() + "/valprep.sh") << "mkdir -p n01484850\nmv ILSVRC2012_val_00000004.JPEG n01484850/\n";
  std::ofstream(dir.path() + "/bad.txt") << "ILSVRC2012_val_00000004.JPEG dog\n";
  std::ofstream(dir.path() + "/missing.txt") << "ILSVRC2012_val_00000009.JPEG n01440764\n";

  EXPECT_THROW(data::sort_validation_images(val, dir.path() + "/bad.txt", val), IoError);
  try {
    data::sort_validation_images(val, dir.path() + "/missing.txt", val);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("ILSVRC2012_val_00000009.JPEG"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("nothing was moved"), std::string::npos);
  }
  const auto r = data::sort_validation_images(val, dir.path() + "/LOC_val_solution.csv", val);
  EXPECT_EQ(r.moved, 3);
  EXPECT_EQ(r.classes, 2);
  EXPECT_EQ(testing::slurp(val + "/n01440764/ILSVRC2012_val_00000003.JPEG"), "img3");
  EXPECT_EQ(r.unlisted.size(), 2u);  // README and image 4
  // Run again: everything is already in place.
  const auto again = data::sort_validation_images(val, dir.path() + "/LOC_val_solution.csv", val);
  EXPECT_EQ(again.moved, 0);
  EXPECT_EQ(again.already_there, 3);
  EXPECT_EQ(data::sort_validation_images(val, dir.path() + "/valprep.sh", val).moved, 1);
  // A destination that exists is never overwritten.
  std::ofstream(val + "/ILSVRC2012_val_00000001.JPEG") << "another";
  std::ofstream(dir.path() + "/one.txt") << "ILSVRC2012_val_00000001.JPEG n01440764\n";
  try {
    data::sort_validation_images(val, dir.path() + "/one.txt", val);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("refusing to overwrite"), std::string::npos);
  }
  EXPECT_EQ(testing::slurp(val + "/n01440764/ILSVRC2012_val_00000001.JPEG"), "img1");
}

TEST(Valprep, CommandLineSaysWhatItDid) {
  testing::TempDir dir;
  const std::string val = dir.path() + "/val";
  std::filesystem::create_directories(val);
  std::ofstream(val + "/ILSVRC2012_val_00000001.JPEG") << "a";
  std::ofstream(val + "/ILSVRC2012_val_00000002.JPEG") << "b";
  std::ofstream(dir.path() + "/labels.txt") << "ILSVRC2012_val_00000001.JPEG n01440764\n"
                                            << "ILSVRC2012_val_00000002.JPEG n01443537\n";
  std::string out;
  EXPECT_EQ(testing::run_cli("valprep --images " + val + " --labels " + dir.path() + "/labels.txt", out), 0) << out;
  EXPECT_NE(out.find("moved 2 images into 2 class folders under " + val), std::string::npos) << out;
  std::ofstream(val + "/ILSVRC2012_val_00000001.JPEG") << "again";
  std::ofstream(dir.path() + "/one.txt") << "ILSVRC2012_val_00000001.JPEG n01440764\n";
  EXPECT_EQ(testing::run_cli("valprep --images " + val + " --labels " + dir.path() + "/one.txt", out), 1);
  EXPECT_NE(out.find("quantlab: error: refusing to overwrite"), std::string::npos) << out;
}

}  // namespace
}  // namespace quantlab
