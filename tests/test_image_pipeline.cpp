// The ImageNet data pipeline: decoding (colour, grayscale, CMYK, PNG under a .JPEG name, corrupt
// and truncated files), the transforms against libtorch's anti-aliased resize, image folders,
// determinism across worker counts (valprep: test_valprep.cpp).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <png.h>
#include <zlib.h>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/image_folder.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/split.h"
#include "test_util.h"

namespace quantlab {
namespace {

using testing::TempDir;

torch::Tensor decoded_tensor(const data::RgbImage& img) {
  return torch::from_blob(const_cast<uint8_t*>(img.pixels()), {img.height, img.width, 3}, torch::kUInt8).clone();
}

double mean_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().mean().item<double>();
}

TEST(ImageDecode, ColourGrayCmykAndPngUnderAJpegName) {
  TempDir dir;
  const auto pic = testing::test_picture(120, 160, 3);
  const std::string base = dir.path() + "/";
  testing::write_jpeg(base + "rgb.JPEG", pic);
  testing::write_jpeg(base + "gray.JPEG", pic, "gray");
  testing::write_jpeg(base + "cmyk.JPEG", pic, "cmyk");
  testing::write_png(base + "png.JPEG", pic);

  const auto rgb = data::decode_image(data::read_file_bytes(base + "rgb.JPEG"));
  EXPECT_EQ(rgb.width, 160);
  EXPECT_EQ(rgb.height, 120);
  EXPECT_LT(mean_abs_diff(decoded_tensor(rgb), pic), 3.0);

  const auto gray = decoded_tensor(data::decode_image(data::read_file_bytes(base + "gray.JPEG")));
  EXPECT_TRUE(torch::equal(gray.select(2, 0), gray.select(2, 1)));  // three equal channels
  const auto luma = (pic.to(torch::kFloat32) * torch::tensor({0.299f, 0.587f, 0.114f})).sum(2);
  EXPECT_LT(mean_abs_diff(gray.select(2, 0), luma), 3.0);

  EXPECT_LT(mean_abs_diff(decoded_tensor(data::decode_image(data::read_file_bytes(base + "cmyk.JPEG"))), pic), 3.0);
  const auto png = data::decode_image(data::read_file_bytes(base + "png.JPEG"));
  EXPECT_TRUE(torch::equal(decoded_tensor(png), pic));  // lossless
  EXPECT_EQ(data::image_size(data::read_file_bytes(base + "png.JPEG")).width, 160);
}

// As PIL reads them for torchvision (convert("RGB")): a 16-bit PNG's samples scaled to 8 bits as
// they are (before: gamma-encoded as linear light, grey 32768 -> 186), and a PNG's alpha dropped
// (before: blended onto black, a transparent pixel -> 0).
TEST(ImageDecode, SixteenBitAndTransparentPngsAsTorchvisionReadsThem) {
  TempDir dir;
  const std::string grey = dir.path() + "/grey16.png", rgba = dir.path() + "/rgba.png";
  testing::write_png_raw(grey, 3, 2, 16, PNG_COLOR_TYPE_GRAY, {128, 0, 128, 0, 128, 0});  // 32768
  const auto g = decoded_tensor(data::decode_image(data::read_file_bytes(grey)));
  EXPECT_EQ(g.size(0), 2);
  EXPECT_EQ(g.size(1), 3);
  EXPECT_LE((g.to(torch::kInt32) - 128).abs().max().item<int>(), 1) << g;
  testing::write_png_raw(rgba, 2, 1, 8, PNG_COLOR_TYPE_RGB_ALPHA, {200, 100, 50, 0, 10, 20, 30, 128});
  const auto c = decoded_tensor(data::decode_image(data::read_file_bytes(rgba)));
  EXPECT_TRUE(torch::equal(c.reshape({-1}), torch::tensor({200, 100, 50, 10, 20, 30}, torch::kUInt8))) << c;
}

// An image whose header claims more pixels than PIL accepts is refused before it is decoded (a
// corrupt or hostile header would take gigabytes in every worker).
TEST(ImageDecode, AHeaderClaimingTooManyPixelsIsRefused) {
  auto chunk = [](const std::string& type, const std::string& data) {
    std::string c;
    for (int s : {24, 16, 8, 0}) c += static_cast<char>((data.size() >> s) & 255);
    const std::string body = type + data;
    c += body;
    const auto crc =
        static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
    for (int s : {24, 16, 8, 0}) c += static_cast<char>((crc >> s) & 255);
    return c;
  };
  std::string ihdr;
  for (uint32_t v : {20000u, 20000u})
    for (int s : {24, 16, 8, 0}) ihdr += static_cast<char>((v >> s) & 255);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  const std::string png =
      std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", "") + chunk("IEND", "");
  try {
    data::decode_image(png);
    FAIL() << "decoded";
  } catch (const data::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("20000 x 20000 pixels, more than the 178956970"), std::string::npos)
        << e.what();
  }
}

TEST(ImageDecode, ReducedScaleDecodingAndBadFiles) {
  TempDir dir;
  const std::string f = dir.path() + "/a.JPEG";
  testing::write_jpeg(f, testing::test_picture(200, 320, 1));
  const std::string bytes = data::read_file_bytes(f);
  const auto half = data::decode_image(bytes, 0.5);
  EXPECT_EQ(half.width, 160);
  EXPECT_EQ(half.height, 100);
  EXPECT_DOUBLE_EQ(half.scale, 0.5);
  EXPECT_EQ(data::decode_image(bytes, 0.51).width, 200);  // 5/8: the smallest scale >= 0.51
  EXPECT_EQ(data::decode_image(bytes, 2.0).width, 320);

  EXPECT_THROW(data::decode_image(bytes.substr(0, bytes.size() / 2)), data::DecodeError);  // truncated
  EXPECT_THROW(data::decode_image(std::string(500, 'x')), data::DecodeError);
  EXPECT_THROW(data::decode_image(bytes.substr(0, 40)), data::DecodeError);
  // A file that cannot be opened or read stops the run (IoError), never skipped for good like a
  // corrupt image (DecodeError); an empty file is a corrupt image.
  EXPECT_THROW(data::read_file_bytes(dir.path() + "/missing.JPEG"), IoError);
  std::filesystem::create_directories(dir.path() + "/folder.JPEG");
  EXPECT_THROW(data::read_file_bytes(dir.path() + "/folder.JPEG"), IoError);
  std::ofstream(dir.path() + "/empty.JPEG").close();
  EXPECT_THROW(data::read_file_bytes(dir.path() + "/empty.JPEG"), data::DecodeError);
  // A FIFO (nobody writing to it) is refused, not waited on.
  ASSERT_EQ(::mkfifo((dir.path() + "/pipe.JPEG").c_str(), 0600), 0);
  EXPECT_THROW(data::read_file_bytes(dir.path() + "/pipe.JPEG"), IoError);
  // The image is read whole, however large.
  const std::string big(3 << 20, 'j');
  std::ofstream(dir.path() + "/big.JPEG", std::ios::binary) << big;
  EXPECT_EQ(data::read_file_bytes(dir.path() + "/big.JPEG"), big);
}

// The validation transform equals resize-256 (libtorch's anti-aliased bilinear, PIL's filter),
// centre crop and normalisation computed with tensor ops.
TEST(ImageTransform, ValidationTransformMatchesAntialiasedResize) {
  const auto pic = testing::test_picture(300, 410, 5);
  data::RgbImage img;
  img.width = 410;
  img.height = 300;
  img.buffer.assign(pic.data_ptr<uint8_t>(), pic.data_ptr<uint8_t>() + pic.numel());
  std::mt19937_64 rng(0);
  const auto plan = data::plan_crop({410, 300}, 224, data::ImageAugment::kNone, rng);
  auto ours = torch::empty({3, 224, 224});
  data::render_crop(img, plan, 224, data::ImageAugment::kNone, rng, ours.data_ptr<float>());

  const auto x = pic.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32) / 255.0;
  const int64_t ow = 256 * 410 / 300;  // 349
  const auto resized = at::_upsample_bilinear2d_aa(x, {256, ow}, false);
  const int64_t top = 16, left = static_cast<int64_t>(std::nearbyint((ow - 224) / 2.0));
  auto ref = resized.narrow(2, top, 224).narrow(3, left, 224)[0];
  ref = (ref - torch::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1})) /
        torch::tensor({0.229f, 0.224f, 0.225f}).view({3, 1, 1});
  EXPECT_LT((ours - ref).abs().max().item<float>(), 2e-3f);
}

TEST(ImageTransform, RandomResizedCropsStayInsideWithTheirAreaAndAspect) {
  std::mt19937_64 rng(11);
  int flips = 0;
  for (int i = 0; i < 2000; ++i) {
    const auto p = data::plan_crop({500, 375}, 224, data::ImageAugment::kOriginal, rng);
    ASSERT_GE(p.x0, 0.0);
    ASSERT_GE(p.y0, 0.0);
    ASSERT_LE(p.x0 + p.w, 500.0);
    ASSERT_LE(p.y0 + p.h, 375.0);
    const double area = p.w * p.h / (500.0 * 375.0), aspect = p.w / p.h;
    ASSERT_GT(area, 0.07);
    ASSERT_LT(aspect, 4.0 / 3.0 + 0.05);
    ASSERT_GT(aspect, 3.0 / 4.0 - 0.05);
    flips += p.flip;
  }
  EXPECT_NEAR(flips, 1000, 120);
  // A flipped crop is the mirror image of the unflipped one.
  const auto pic = testing::test_picture(100, 140, 2);
  data::RgbImage img;
  img.width = 140;
  img.height = 100;
  img.buffer.assign(pic.data_ptr<uint8_t>(), pic.data_ptr<uint8_t>() + pic.numel());
  data::CropPlan p{10, 5, 90, 80, 10, 5, 100, 85, false};
  auto a = torch::empty({3, 64, 64}), b = torch::empty({3, 64, 64});
  data::render_crop(img, p, 64, data::ImageAugment::kTorchvision, rng, a.data_ptr<float>());
  p.flip = true;
  data::render_crop(img, p, 64, data::ImageAugment::kTorchvision, rng, b.data_ptr<float>());
  EXPECT_TRUE(torch::allclose(a, b.flip({2})));
}

TEST(ImageFolder, ScansSortedClassesAndRejectsStrangers) {
  TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n02", "n01", "n03"}, 2);
  testing::write_image_tree(dir.path() + "/val", {"n03", "n01"}, 1);
  std::ofstream(dir.path() + "/train/n01/readme.txt") << "not an image";
  std::ofstream(dir.path() + "/train/n02/scan.BMP") << "an image QuantLab does not decode";
  ::testing::internal::CaptureStderr();
  const auto train = data::scan_image_folder(dir.path() + "/train");
  const std::string warned = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warned.find("/train: 1 images in formats QuantLab does not decode (BMP, TIFF, WebP, PPM/PGM; e.g. " +
                        dir.path() + "/train/n02/scan.BMP) are left out"),
            std::string::npos)
      << warned;
  EXPECT_EQ(train.classes, (std::vector<std::string>{"n01", "n02", "n03"}));
  EXPECT_EQ(train.files.size(), 6u);  // the .txt is not an image, the .BMP not one QuantLab reads
  EXPECT_EQ(train.labels, (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
  const auto val = data::scan_image_folder(dir.path() + "/val", &train.classes);
  EXPECT_EQ(val.labels, (std::vector<int64_t>{0, 2}));  // indexed by the training classes

  testing::write_image_tree(dir.path() + "/val", {"n09"}, 1);
  try {
    data::scan_image_folder(dir.path() + "/val", &train.classes);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/val/n09: not a class of the training set"), std::string::npos) << e.what();
  }
  std::filesystem::create_directories(dir.path() + "/empty/n01");
  EXPECT_THROW(data::scan_image_folder(dir.path() + "/empty"), IoError);
  EXPECT_THROW(data::scan_image_folder(dir.path() + "/nothing"), IoError);
}

// A link that leads nowhere (a class folder or an image on a file system not mounted, a loop) is
// named before anything starts: it was left out without a word, or stopped the scan with a bare
// filesystem error. train/ without val/ names val/ (the loader asked for MNIST's t10k files).
TEST(ImageFolder, LinksThatLeadNowhereAndAMissingValFolderAreNamed) {
  namespace fs = std::filesystem;
  TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01", "n02"}, 2);
  try {
    data::load_problem(dir.path(), data::DataOptions{});
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path() + "/val: missing; image folders (ImageNet) need train/<class>/ "
                                                      "and val/<class>/"),
              std::string::npos)
        << e.what();
  }
  const auto scan_error = [&] {
    try {
      data::scan_image_folder(dir.path() + "/train");
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  fs::create_symlink("/nonexistent/n03", dir.path() + "/train/n03");
  EXPECT_NE(scan_error().find("/train/n03: a link to /nonexistent/n03, which does not exist"), std::string::npos)
      << scan_error();
  fs::remove(dir.path() + "/train/n03");
  fs::create_symlink("gone.JPEG", dir.path() + "/train/n01/x.JPEG");
  EXPECT_NE(scan_error().find("/train/n01/x.JPEG: a link to gone.JPEG, which does not exist"), std::string::npos)
      << scan_error();
  fs::remove(dir.path() + "/train/n01/x.JPEG");
  fs::create_symlink("loop.JPEG", dir.path() + "/train/n01/loop.JPEG");
  EXPECT_NE(scan_error().find("/train/n01/loop.JPEG: "), std::string::npos) << scan_error();
  fs::remove(dir.path() + "/train/n01/loop.JPEG");
  EXPECT_EQ(scan_error(), "");
}

// Grayscale, CMYK and PNG-named-JPEG images train; corrupt and truncated ones are reported once
// and left out; the batches do not depend on the number of workers; a new epoch draws new crops.
TEST(ImageFolder, BadFilesAreSkippedAndBatchesAreDeterministic) {
  TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01", "n02"}, 4);
  testing::write_image_tree(dir.path() + "/val", {"n01", "n02"}, 1);
  const std::string c = dir.path() + "/train/n01/";
  testing::write_jpeg(c + "gray.JPEG", testing::test_picture(200, 260, 9), "gray");
  testing::write_jpeg(c + "cmyk.JPEG", testing::test_picture(230, 200, 8), "cmyk");
  testing::write_png(c + "png.JPEG", testing::test_picture(210, 250, 7));
  std::ofstream(c + "corrupt.JPEG") << std::string(3000, '\x17');
  const std::string good = data::read_file_bytes(c + "n01_0.JPEG");
  std::ofstream(c + "truncated.JPEG", std::ios::binary) << good.substr(0, good.size() / 3);

  data::DataOptions o;
  o.augment = data::ImageAugment::kOriginal;
  o.crop = 96;
  const auto d = data::load_problem(dir.path(), o);
  EXPECT_EQ(d.format, "image folders");
  EXPECT_EQ(d.train->size(), 13);
  EXPECT_EQ(d.valid_indices.size(), 2u);
  const auto order = data::epoch_order(d.train_indices, 3, 0);
  const data::SampleContext ctx{true, 3, 0};
  data::BatchLoader one(*d.train, order, 4, ctx, {1, 1}), three(*d.train, order, 4, ctx, {3, 3});
  int64_t samples = 0;
  while (auto a = one.next()) {
    auto b = three.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(torch::equal(a->inputs, b->inputs));
    EXPECT_TRUE(torch::equal(a->labels, b->labels));
    EXPECT_EQ(a->inputs.size(1), 3);
    EXPECT_EQ(a->inputs.size(2), 96);
    EXPECT_TRUE(torch::isfinite(a->inputs).all().item<bool>());
    samples += a->labels.size(0);
  }
  EXPECT_EQ(samples, 11);  // 13 files, 2 unreadable
  const auto skipped = dynamic_cast<const data::ImageFolderDataset&>(*d.train).skipped();
  EXPECT_EQ(skipped, (std::vector<std::string>{c + "corrupt.JPEG", c + "truncated.JPEG"}));

  const auto first = d.train->make_batch(order.data(), 2, 0, ctx);
  EXPECT_TRUE(torch::equal(first.inputs, d.train->make_batch(order.data(), 2, 0, ctx).inputs));
  EXPECT_FALSE(torch::equal(first.inputs, d.train->make_batch(order.data(), 2, 0, {true, 3, 1}).inputs));
  const auto v1 = d.valid->make_batch(d.valid_indices.data(), 2, 0, {false, 3, 0});
  const auto v2 = d.valid->make_batch(d.valid_indices.data(), 2, 0, {false, 4, 7});
  EXPECT_TRUE(torch::equal(v1.inputs, v2.inputs));  // validation draws nothing
}

// Decoding at a reduced DCT scale changes pixels only slightly.
TEST(ImageFolder, ScaledDecodingStaysCloseToFullDecoding) {
  TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01"}, 2);
  testing::write_jpeg(dir.path() + "/train/n01/large.JPEG", testing::test_picture(600, 800, 4));  // 1/2 scale at 256
  auto index = data::scan_image_folder(dir.path() + "/train");
  data::ImageFolderOptions full, scaled;
  full.crop = scaled.crop = 64;
  scaled.scaled_decode = true;
  const data::ImageFolderDataset a(index, full), b(index, scaled);
  const std::vector<int64_t> idx = {0, 1, 2};
  for (const bool train : {false, true}) {
    const auto x = a.make_batch(idx.data(), 3, 0, {train, 1, 0}).inputs;
    const auto y = b.make_batch(idx.data(), 3, 0, {train, 1, 0}).inputs;
    const float diff = (x - y).abs().mean().item<float>();
    EXPECT_GT(diff, 0.0f);   // the scaled path did run
    EXPECT_LT(diff, 0.05f);  // normalised units (~1/20 of a std)
  }
}

}  // namespace
}  // namespace quantlab

namespace quantlab {
namespace {

TEST(CommandLine, MissingDataLeavesNoExperimentBehind) {
  testing::TempDir home;
  std::filesystem::create_directories(home.path() + "/MNIST");
  std::filesystem::copy_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json",
                             home.path() + "/MNIST/config.json");
  std::string out;
  EXPECT_EQ(testing::run_cli("--problem=MNIST --topology=MLP --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("no data files of MNIST"), std::string::npos) << out;
  // Nothing was created: no storage, no links, no experiment.
  EXPECT_FALSE(std::filesystem::exists(home.path() + "/MNIST/logs"));
  EXPECT_FALSE(std::filesystem::exists(home.path() + "/storage"));
}

}  // namespace
}  // namespace quantlab
