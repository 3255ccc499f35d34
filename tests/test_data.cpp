// The IDX reader on files written in the real format, the split and the epoch orders.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>

#include <atomic>

#include <thread>

#include <future>

#include <fstream>
#include <numeric>
#include <set>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/split.h"
#include "quantlab/data/tensor_dataset.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

using testing::TempDir;

TEST(Idx, ReadsPlainAndGzippedFiles) {
  TempDir dir;
  const auto img = torch::randint(256, {5, 3, 4}, torch::kLong).to(torch::kUInt8);
  testing::write_idx(dir.path() + "/a", img, false);
  testing::write_idx(dir.path() + "/b.gz", img, true);
  EXPECT_TRUE(torch::equal(data::read_idx(dir.path() + "/a"), img));
  EXPECT_TRUE(torch::equal(data::read_idx(dir.path() + "/b"), img));  // finds b.gz
}

TEST(Idx, MissingTruncatedAndMalformedFilesAreNamed) {
  TempDir dir;
  const std::string f = dir.path() + "/x";
  try {
    data::read_idx(f);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(f + "[.gz]: no such file"), std::string::npos) << e.what();
  }
  testing::write_idx(f, torch::zeros({10, 4}, torch::kUInt8), false);
  std::filesystem::resize_file(f, 4 + 8 + 30);
  try {
    data::read_idx(f);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("its header declares 40 data bytes, more than the 42-byte file can hold"),
              std::string::npos)
        << e.what();
  }
  std::ofstream(f, std::ios::binary) << "hello world";
  EXPECT_THROW(data::read_idx(f), IoError);
  // A header asking for a gigabyte in a small file, plain or compressed, is refused before the
  // memory is taken.
  const std::string huge("\x00\x00\x08\x03\x00\x00\x03\xe8\x00\x00\x03\xe8\x00\x00\x03\xe8", 16);  // 1000^3
  std::ofstream(f, std::ios::binary) << huge << "some bytes";
  for (const bool gz : {false, true}) {
    if (gz) {
      gzFile z = gzopen((f + ".gz").c_str(), "wb");
      gzwrite(z, huge.data(), static_cast<unsigned>(huge.size()));
      gzclose(z);
    }
    try {
      data::read_idx(gz ? f + ".gz" : f);
      FAIL() << gz;
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("its header declares 1000000000 data bytes, more than the"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(Idx, LabelCountMustMatch) {
  TempDir dir;
  testing::write_idx(dir.path() + "/train-images-idx3-ubyte", torch::zeros({4, 2, 2}, torch::kUInt8), false);
  testing::write_idx(dir.path() + "/train-labels-idx1-ubyte", torch::zeros({3}, torch::kUInt8), false);
  EXPECT_THROW(data::read_idx_pair(dir.path(), "train"), IoError);
  // Gzipped, the error names the .gz files, the ones read (it used to name them without .gz).
  testing::write_idx(dir.path() + "/t10k-images-idx3-ubyte.gz", torch::zeros({4, 2, 2}, torch::kUInt8), true);
  testing::write_idx(dir.path() + "/t10k-labels-idx1-ubyte.gz", torch::zeros({3}, torch::kUInt8), true);
  try {
    data::read_idx_pair(dir.path(), "t10k");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), dir.path() + "/t10k-labels-idx1-ubyte.gz: has 3 labels for 4 images in " +
                                         dir.path() + "/t10k-images-idx3-ubyte.gz");
  }
}

// A CIFAR-10 folder with one batch missing is CIFAR-10 still: the error names the missing batch
// (it used to be taken for an IDX folder and asked for train-images-idx3-ubyte), through --data too.
TEST(Problem, ACifarFolderWithABatchMissingNamesIt) {
  TempDir dir;
  testing::write_cifar10(dir.path(), 2);
  std::filesystem::remove(dir.path() + "/data_batch_3.bin");
  EXPECT_EQ(data::find_data_dir("/nonexistent", "CIFAR-10", dir.path()), dir.path());
  try {
    data::load_problem(dir.path(), data::DataOptions{});
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path() + "/data_batch_3.bin: missing; expected the CIFAR-10 binary"),
              std::string::npos)
        << e.what();
  }
  // Only the test file: the first training batch is the one named.
  TempDir test_only;
  testing::write_cifar_file(test_only.path() + "/test_batch.bin", 2, 1, 10);
  try {
    data::load_problem(test_only.path(), data::DataOptions{});
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/data_batch_1.bin: missing"), std::string::npos) << e.what();
  }
}

// A folder with the files of two data sets is refused, naming both, rather than read as one of
// them: a stray CIFAR-100 test.bin beside Fashion-MNIST's files used to make the run a CIFAR-100
// run that stopped on a missing train.bin.
TEST(Problem, AFolderWithTwoDataSetsNamesBoth) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 8, 4, 2, true);
  EXPECT_EQ(data::load_problem(dir.path(), data::DataOptions{}).format, "IDX");
  testing::write_cifar_file(dir.path() + "/test.bin", 2, 2, 100);
  try {
    data::load_problem(dir.path(), data::DataOptions{});
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(
        std::string(e.what()).find(dir.path() + ": holds the files of more than one data set: IDX "
                                                "(train-images-idx3-ubyte.gz), CIFAR-100 (test.bin); keep one data set "
                                                "per folder"),
        std::string::npos)
        << e.what();
  }
  std::filesystem::remove(dir.path() + "/test.bin");
  testing::write_cifar_file(dir.path() + "/data_batch_4.bin", 2, 1, 10);
  std::filesystem::create_directories(dir.path() + "/train");
  std::filesystem::create_directories(dir.path() + "/val");
  try {
    data::load_problem(dir.path(), data::DataOptions{});
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("IDX (train-images-idx3-ubyte.gz), CIFAR-10 (data_batch_4.bin), image "
                                         "folders (train/ and val/)"),
              std::string::npos)
        << e.what();
  }
  // A test set's IDX file alone counts too (quantlab-infer reads it).
  TempDir cifar;
  testing::write_cifar10(cifar.path(), 2);
  std::filesystem::copy_file(dir.path() + "/t10k-images-idx3-ubyte.gz", cifar.path() + "/t10k-images-idx3-ubyte.gz");
  try {
    data::load_problem(cifar.path(), data::DataOptions{});
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("IDX (t10k-images-idx3-ubyte.gz), CIFAR-10 (test_batch.bin)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Split, SameSeedSameSplitAndNoLeak) {
  const auto a = data::split_indices(1000, 0.1, 42);
  const auto b = data::split_indices(1000, 0.1, 42);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.valid, b.valid);
  EXPECT_EQ(a.train.size(), 900u);
  EXPECT_EQ(a.valid.size(), 100u);
  std::set<int64_t> all(a.train.begin(), a.train.end());
  for (int64_t v : a.valid) EXPECT_EQ(all.count(v), 0u);
  all.insert(a.valid.begin(), a.valid.end());
  EXPECT_EQ(all.size(), 1000u);
  EXPECT_NE(data::split_indices(1000, 0.1, 43).valid, a.valid);
}

TEST(Split, EpochOrderIsAFunctionOfSeedAndEpoch) {
  const auto s = data::split_indices(500, 0.2, 1);
  const auto e0 = data::epoch_order(s.train, 1, 0);
  EXPECT_EQ(e0, data::epoch_order(s.train, 1, 0));
  EXPECT_NE(e0, data::epoch_order(s.train, 1, 1));
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()), std::set<int64_t>(s.train.begin(), s.train.end()));
}

TEST(BatchLoader, DeliversEveryIndexInOrder) {
  data::ImageSet set{torch::arange(10 * 4, torch::kLong).reshape({10, 2, 2}).to(torch::kUInt8),
                     torch::arange(10, torch::kLong)};
  const data::TensorDataset ds(set, {});
  const std::vector<int64_t> order = {3, 1, 4, 0, 5, 9, 2};
  data::BatchLoader loader(ds, order, 3, {}, {1, 1});
  EXPECT_EQ(loader.num_batches(), 3);
  std::vector<int64_t> seen;
  while (auto b = loader.next()) {
    EXPECT_EQ(b->inputs.sizes().size(), 4u);
    for (int64_t i = 0; i < b->labels.size(0); ++i) {
      seen.push_back(b->labels[i].item<int64_t>());
      EXPECT_FLOAT_EQ(b->inputs[i][0][0][0].item<float>(), static_cast<float>(seen.back() * 4) / 255.0f);
    }
  }
  EXPECT_EQ(seen, order);
  // A batch size near 2^63 (treat.data.bs_valid) is one batch of all, not an overflowed count of
  // none (the validation measured "no samples").
  data::BatchLoader all(ds, order, INT64_MAX, {}, {1, 1});
  EXPECT_EQ(all.num_batches(), 1);
  ASSERT_TRUE(all.next().has_value());
  EXPECT_EQ(data::BatchLoader(ds, {}, INT64_MAX, {}, {1, 1}).num_batches(), 0);
}

// A loader abandoned after one batch (an interrupted epoch) stops its workers within the bounded
// window instead of building the whole epoch, and its destructor returns.
TEST(BatchLoader, StopsEarlyWithoutHanging) {
  struct Counting : data::Dataset {
    mutable std::atomic<int> built{0};
    int64_t size() const override { return 100; }
    torch::Tensor labels() const override { return torch::zeros({100}, torch::kLong); }
    std::string source(int64_t) const override { return "memory"; }
    data::Batch make_batch(const int64_t*, int64_t count, int64_t, const data::SampleContext&) const override {
      ++built;
      return {torch::zeros({count, 1, 2, 2}), torch::zeros({count}, torch::kLong)};
    }
  } counting;
  std::vector<int64_t> order(100);
  std::iota(order.begin(), order.end(), 0);
  auto done = std::async(std::launch::async, [&] {
    data::BatchLoader loader(counting, order, 2, {}, {3, 2});  // 50 batches, 3 workers, window of 2
    EXPECT_TRUE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the workers fill the window
  });  // the destructor joins the workers while they wait on a full window
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "the loader's destructor hangs";
  // The batch delivered and a window of 3 (the window is at least the 3 workers): never the epoch's 50.
  EXPECT_LE(counting.built.load(), 1 + 3) << "workers went on building batches nobody asked for";
}

// Several workers build batches out of order; they come out in order and equal to one worker's.
TEST(BatchLoader, ManyWorkersGiveTheSameBatchesInOrder) {
  data::ImageSet set{torch::randint(0, 255, {64, 3, 6, 6}).to(torch::kUInt8), torch::arange(64, torch::kLong)};
  data::Preprocess pre;
  pre.augment = true;
  const data::TensorDataset ds(set, pre);
  std::vector<int64_t> order = data::epoch_order(
      std::vector<int64_t>(set.labels.data_ptr<int64_t>(), set.labels.data_ptr<int64_t>() + 64), 5, 2);
  const data::SampleContext ctx{true, 5, 2};
  data::BatchLoader one(ds, order, 5, ctx, {1, 1}), four(ds, order, 5, ctx, {4, 6});
  int64_t n = 0;
  while (auto a = one.next()) {
    auto b = four.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(torch::equal(a->inputs, b->inputs));
    EXPECT_TRUE(torch::equal(a->labels, b->labels));
    ++n;
  }
  EXPECT_EQ(n, 13);
  EXPECT_FALSE(four.next().has_value());
}

// A worker's error reaches the consumer instead of hanging it.
TEST(BatchLoader, RethrowsAWorkersError) {
  struct Failing : data::Dataset {
    int64_t size() const override { return 10; }
    torch::Tensor labels() const override { return torch::zeros({10}, torch::kLong); }
    std::string source(int64_t) const override { return "memory"; }
    data::Batch make_batch(const int64_t*, int64_t, int64_t first, const data::SampleContext&) const override {
      if (first >= 4) throw IoError("disk gone");
      return {torch::zeros({2, 1, 1, 1}), torch::zeros({2}, torch::kLong)};
    }
  } failing;
  std::vector<int64_t> order(10);
  std::iota(order.begin(), order.end(), 0);
  data::BatchLoader loader(failing, order, 2, {}, {2, 2});
  EXPECT_TRUE(loader.next().has_value());
  EXPECT_TRUE(loader.next().has_value());
  EXPECT_THROW(while (loader.next()){}, IoError);
}

TEST(Problem, FindsDataAndExplainsWhereItLooked) {
  TempDir home;
  try {
    data::find_data_dir(home.path(), "MNIST", "");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(home.path() + "/MNIST/data: no data files of MNIST"), std::string::npos);
  }
  testing::write_toy_idx_problem(home.path() + "/MNIST/data", 20, 10, 2, true);
  EXPECT_EQ(data::find_data_dir(home.path(), "MNIST", ""), home.path() + "/MNIST/data");
  data::DataOptions o;
  o.valid_fraction = 0.25;
  const auto d = data::load_idx_problem(home.path() + "/MNIST/data", o);
  EXPECT_EQ(d.train_indices.size(), 15u);
  EXPECT_EQ(d.valid_indices.size(), 5u);
  EXPECT_EQ(d.test->size(), 10);
}

}  // namespace
}  // namespace quantlab
