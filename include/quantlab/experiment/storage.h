// Where a problem's data and experiment logs live (the original's layout):
//   cfg/hard_storage.json = {"data": DIR, "logs": DIR}  (relative paths are relative to <home>)
//   DIR/QuantLab/<Problem>/data and DIR/QuantLab/<Problem>/logs hold the files, and
//   <home>/<Problem>/data and <home>/<Problem>/logs are symbolic links to them.
// Without cfg/hard_storage.json both roots are <home>/storage, so a fresh checkout just runs.
// Names are validated so that nothing is written outside <home> and the two storage roots.
#pragma once

#include <string>
#include <vector>

namespace quantlab {

struct Storage {
  std::string home;       // the main folder
  std::string data_root;  // DIR/QuantLab of "data"
  std::string logs_root;  // DIR/QuantLab of "logs"
};

// Reads <home>/cfg/hard_storage.json (or uses the default). Throws ConfigError on a malformed file.
Storage read_storage(const std::string& home);

// Throws Error unless `name` is a plain folder name: not empty, no '/', '\\', no leading '.'.
void check_plain_name(const std::string& what, const std::string& name);

struct ProblemPaths {
  std::string dir;   // <home>/<Problem>
  std::string data;  // <home>/<Problem>/data (a link into the data root, or a folder of the user's)
  std::string logs;  // <home>/<Problem>/logs
};

// Creates the storage folders and the links of `problem` (idempotent); for FashionMNIST links the
// Debian package's files into the data folder when it has none. Throws IoError when a folder cannot
// be created or written (probed with a temporary file), naming it.
ProblemPaths prepare_problem(const Storage& storage, const std::string& problem);

// `quantlab problem add NAME`: prepare_problem plus <home>/NAME/config.json from a template
// (refuses to overwrite). Returns what it did, line by line, for the user.
std::vector<std::string> add_problem(const Storage& storage, const std::string& name);

}  // namespace quantlab
