// `quantlab list`: one line per experiment of a problem, with named columns: its class, epochs
// done, the best epoch and its validation accuracy (top-5 too where the problem measures it), the
// test accuracy once a run has ended, and whether it finished. Read from each experiment's
// status.json; where a stopped run left status.json behind its last checkpoint, from the checkpoint.
#pragma once

#include <iosfwd>
#include <string>

namespace quantlab::experiment {

// Prints the table for `problem` of the main folder `home`.
void list_experiments(const std::string& home, const std::string& problem, std::ostream& out);

}  // namespace quantlab::experiment
