// Where a problem's data and experiment logs live (the original's layout):
//   cfg/hard_storage.json = {"data": DIR, "logs": DIR}  (relative paths are relative to <home>)
//   DIR/QuantLab/<Problem>/data and DIR/QuantLab/<Problem>/logs hold the files, and
//   <home>/<Problem>/data and <home>/<Problem>/logs are symbolic links to them.
// Without cfg/hard_storage.json both roots are <home>/storage, created on demand, so a fresh
// checkout just runs. The folders hard_storage.json names must exist (a drive that is not mounted
// must not be replaced by folders on the system disk).
// Nothing here ever replaces or removes an existing folder or link: a link of the user's is used
// where it points, and a dangling one stops the run with the path it points to. Names are
// validated so that nothing is written outside <home> and the two storage roots.
#pragma once

#include <string>
#include <vector>

namespace quantlab::experiment {

struct Storage {
  std::string home;       // the main folder (absolute)
  std::string data_root;  // DIR/QuantLab of "data"
  std::string logs_root;  // DIR/QuantLab of "logs"
};

// Reads <home>/cfg/hard_storage.json (or uses the default). Creates nothing. Throws Error when
// `home` is not a folder, ConfigError on a malformed file, IoError when a root it names is not an
// existing folder.
Storage read_storage(const std::string& home);

// Throws Error unless `name` is a plain name: not empty, no '/', '\\', no leading '.'. `kind` says
// in the message what the name names ("folder name", or where the file is for a file's name).
void check_plain_name(const std::string& what, const std::string& name, const std::string& kind = "folder name");

struct ProblemPaths {
  std::string dir;   // <home>/<Problem>
  std::string data;  // <home>/<Problem>/data (a link into the data root, or a folder of the user's)
  std::string logs;  // <home>/<Problem>/logs
};

// The paths of the problem `problem`, whose folder <home>/<problem> must exist; creates nothing.
// Throws Error naming the folder and listing the problems of `home` otherwise.
ProblemPaths problem_paths(const Storage& storage, const std::string& problem);

// Problems of `home`: its folders holding a config.json, sorted.
std::vector<std::string> list_problems(const std::string& home);

// Makes the storage folders and the data/logs links of an existing problem folder (idempotent),
// and probes the logs folder with a temporary file. Throws IoError naming the path when a folder
// cannot be created or written, or when a link dangles (with where it points).
void prepare_storage(const Storage& storage, const ProblemPaths& paths);

// `quantlab problem add NAME`: <home>/NAME/config.json from the shipped template
// (templates/problem_config.json; refuses to overwrite) and its storage. Returns what it did, line
// by line, for the user.
std::vector<std::string> add_problem(const Storage& storage, const std::string& name);

}  // namespace quantlab::experiment
