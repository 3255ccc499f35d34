// quantlab-infer: an exported model on a test set, with the integer runtime alone (no libtorch):
//   quantlab-infer --model=FILE --data=DIR [--threads=N]
// prints the test accuracy and the images per second. `quantlab infer` does the same and finds
// the data of a problem by its name.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "quantlab/runtime/engine.h"
#include "quantlab/util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"Run an exported QuantLab model with the integer runtime"};
  std::string model, data;
  int threads = 0;
  app.add_option("--model", model, "The model file (quantlab export)")->required();
  app.add_option("--data", data, "The folder of the test set (IDX t10k-* files or CIFAR's test file)")->required();
  app.add_option("--threads", threads, "Threads (default: all)")->check(CLI::Range(0, 1024));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help and --version: 0; a command line it cannot parse: 2
  }
  try {
    const quantlab::runtime::Engine engine(quantlab::runtime::load_model(model));
    const auto images = quantlab::runtime::read_test_images(data);
    const auto e = quantlab::runtime::evaluate(engine, images, threads);
    std::printf("%s (%s): test accuracy %.2f%% (%lld of %lld images), %.0f images/s on %d threads\n",
                engine.model().net_class.c_str(), engine.model().source.c_str(), e.accuracy(),
                static_cast<long long>(e.correct), static_cast<long long>(e.images), e.images_per_second(), e.threads);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "quantlab-infer: error: " << e.what() << std::endl;
    return 1;
  }
}
