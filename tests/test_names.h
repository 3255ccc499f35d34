// The tests speak of the library's names without their folder's namespace (quantlab::train::Trainer
// as Trainer), as they did before every folder had one; the library itself qualifies them.
#pragma once

namespace quantlab {
namespace config {}
namespace core {}
namespace experiment {}
namespace export_ {}
namespace log {}
namespace topology {}
namespace train {}
using namespace config;
using namespace core;
using namespace experiment;
using namespace export_;
using namespace log;
using namespace topology;
using namespace train;
}  // namespace quantlab
