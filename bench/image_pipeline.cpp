// The ImageNet input pipeline alone: decoded + transformed images per second.
//   image_pipeline --generate DIR [--count N]   writes DIR/train/<class>/*.JPEG and DIR/val/...:
//                                              N pictures at ImageNet-like sizes and file sizes
//   image_pipeline DIR [--workers W] [--batch B] [--batches K] [--augment original|torchvision|none]
//                      [--scaled_decode] [--crop S]
// Reads DIR/train in a seeded shuffled order through the batch loader (W worker threads) and
// prints, as JSON on the last line, images per second and per worker, after one warm-up batch.
#include <CLI/CLI.hpp>
#include <turbojpeg.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/split.h"
#include "quantlab/util/runtime.h"
#include "bench_util.h"

namespace {

// A photo-like picture: smooth shapes, gradients and sensor-like noise, so JPEG files come out
// at ImageNet's typical 60-200 KB.
std::vector<uint8_t> picture(int w, int h, std::mt19937_64& rng) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  std::normal_distribution<float> noise(0.f, 14.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  float f[3][4];
  for (auto& c : f)
    for (auto& v : c) v = u(rng);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const float fx = static_cast<float>(x) / w, fy = static_cast<float>(y) / h;
        float v = 128.f + 70.f * std::sin(10.f * f[c][0] * fx + 7.f * f[c][1] * fy + 6.f * f[c][2]) +
                  40.f * std::cos(25.f * f[c][3] * fx * fy) + noise(rng);
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.f, 255.f));
      }
  return px;
}

int generate(const std::string& dir, int count) {
  const int classes = 10;
  std::mt19937_64 rng(1);
  const int sizes[][2] = {{500, 375}, {375, 500}, {500, 333}, {500, 400},
                          {640, 480}, {400, 300}, {800, 600}, {333, 500}};
  tjhandle t = tjInitCompress();
  double bytes = 0;
  for (int i = 0; i < count; ++i) {
    const bool val = (i / classes) % 10 == 9;  // every tenth picture of each class
    const auto& s = sizes[rng() % 8];
    const auto px = picture(s[0], s[1], rng);
    unsigned char* out = nullptr;
    unsigned long size = 0;
    tjCompress2(t, px.data(), s[0], 0, s[1], TJPF_RGB, &out, &size, TJSAMP_420, 90, 0);
    char name[64];
    std::snprintf(name, sizeof name, "/%s/n%08d/img_%06d.JPEG", val ? "val" : "train", i % classes, i);
    std::filesystem::create_directories(std::filesystem::path(dir + name).parent_path());
    std::ofstream(dir + name, std::ios::binary)
        .write(reinterpret_cast<const char*>(out), static_cast<std::streamsize>(size));
    bytes += static_cast<double>(size);
    tjFree(out);
  }
  tjDestroy(t);
  std::cout << "wrote " << count << " JPEGs to " << dir << ", mean " << bytes / count / 1024 << " KiB" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time the ImageNet input pipeline"};
  std::string dir, gen, augment = "original";
  int count = 3000, workers = 1, batches = 20;
  int64_t batch = 64, crop = 224;
  bool scaled_decode = false;
  app.add_option("dir", dir, "Image-folder tree (train/ and val/)");
  app.add_option("--generate", gen, "Write a tree of generated JPEGs here and exit");
  app.add_option("--count", count);
  app.add_option("--workers", workers);
  app.add_option("--batch", batch);
  app.add_option("--batches", batches);
  app.add_option("--crop", crop);
  app.add_option("--augment", augment)->check(CLI::IsMember({"original", "torchvision", "none"}));
  app.add_flag("--scaled_decode", scaled_decode, "Decode JPEGs at a reduced DCT scale where the crop allows");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!gen.empty()) return generate(gen, count);
    quantlab::configure_runtime(0);  // what quantlab sets for itself (the allocator settings)
    quantlab::data::DataOptions o;
    o.augment = augment == "none"          ? quantlab::data::ImageAugment::kNone
                : augment == "torchvision" ? quantlab::data::ImageAugment::kTorchvision
                                           : quantlab::data::ImageAugment::kOriginal;
    o.crop = crop;
    o.scaled_decode = scaled_decode;
    auto d = quantlab::data::load_problem(dir, o);
    auto order = quantlab::data::epoch_order(d.train_indices, 0, 0);
    order.resize(std::min<size_t>(order.size(), static_cast<size_t>(batch * (batches + 1))));
    quantlab::data::BatchLoader loader(*d.train, order, batch, {true, 0, 0},
                                       {workers, static_cast<size_t>(2 * workers)});
    loader.next();  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    int64_t images = 0;
    while (auto b = loader.next()) images += b->labels.size(0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "{\"impl\": \"cpp\", \"workers\": " << workers << ", \"augment\": \"" << augment
              << "\", \"scaled_decode\": " << (scaled_decode ? "true" : "false") << ", \"images\": " << images
              << ", \"images_per_s\": " << images / s << ", \"per_worker\": " << images / s / workers
              << ", \"peak_rss_mib\": " << quantlab::bench::peak_rss_kib() / 1024.0 << "}" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "image_pipeline: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
