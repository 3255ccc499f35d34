// Storage roots, problem folders and their links.
#include "quantlab/experiment/storage.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "quantlab/config/json_node.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {

// The text of templates/problem_config.json, embedded at build time (CMakeLists.txt).
extern const char* const kProblemConfigTemplate;

namespace {

namespace fs = std::filesystem;

std::string absolute(const std::string& home, const std::string& p) {
  return fs::path(p).is_absolute() ? fs::path(p).lexically_normal().string()
                                   : (fs::path(home) / p).lexically_normal().string();
}

// What one call created, removed again when the call fails: links, and folders (only while empty).
class Undo {
 public:
  ~Undo() {
    if (done_) return;
    std::error_code ec;
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) fs::remove(*it, ec);  // a non-empty folder stays
  }
  void made(const std::string& path) { made_.push_back(path); }
  void commit() { done_ = true; }

 private:
  std::vector<std::string> made_;
  bool done_ = false;
};

void make_dirs(const std::string& dir, Undo* undo = nullptr) {
  // Each missing folder on the way, recorded so that a failure later removes it again.
  std::vector<fs::path> missing;
  std::error_code ec;
  for (fs::path p = fs::path(dir).lexically_normal(); !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (!fs::create_directory(*it, ec) && !fs::is_directory(*it))
      throw IoError(dir + ": cannot create folder " + it->string() + " (" + ec.message() + ")");
    if (undo) undo->made(it->string());
  }
  if (!fs::is_directory(dir, ec)) throw IoError(dir + ": cannot create folder (not a folder)");
}

// Writes and removes a small file: a folder that cannot take it fails now, not after an epoch.
void probe_writable(const std::string& dir) {
  const std::string probe = dir + "/.quantlab-probe-" + std::to_string(getpid());
  {
    std::ofstream out(probe);
    out << "probe\n";
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(probe, ec);
      throw IoError(dir + ": not writable (check permissions and free space)");
    }
  }
  fs::remove(probe);
}

// <home>/<Problem>/<leaf> -> `target`, made only when nothing is there yet. A folder or a link of
// the user's is kept as it is; a dangling link is an error that says where it points.
void link_into(const std::string& link, const std::string& target, Undo& undo) {
  std::error_code ec;
  const auto st = fs::symlink_status(link, ec);
  if (fs::is_symlink(st)) {
    const std::string to = fs::read_symlink(link, ec).string();
    if (!fs::exists(link, ec))
      throw IoError(link + " is a link to " + to +
                    ", which does not exist (a drive that is not mounted?); mount it, or remove the link to "
                    "use the storage of cfg/hard_storage.json");
    if (!fs::is_directory(link, ec)) throw IoError(link + " is a link to " + to + ", which is not a folder");
    return;
  }
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) throw IoError(link + ": exists and is not a folder or a link");
    return;  // a real folder: the user's choice
  }
  make_dirs(target, &undo);
  fs::create_directory_symlink(target, link, ec);
  if (ec) throw IoError(link + ": cannot link to " + target + " (" + ec.message() + ")");
  undo.made(link);
}

// Checks the two links before anything is made: a dangling one of the user's stops here.
void check_link(const std::string& link) {
  std::error_code ec;
  const auto st = fs::symlink_status(link, ec);
  if (fs::is_symlink(st) && !fs::is_directory(link, ec))
    throw IoError(link + " is a link to " + fs::read_symlink(link, ec).string() +
                  (fs::exists(link, ec) ? ", which is not a folder"
                                        : ", which does not exist (a drive that is not mounted?); mount it, or remove "
                                          "the link to use the storage of cfg/hard_storage.json") +
                  "; nothing was created");
  if (fs::exists(st) && !fs::is_symlink(st) && !fs::is_directory(st))
    throw IoError(link + ": exists and is not a folder or a link; nothing was created");
}

std::string root_of(const config::JsonNode& root, const char* key, const std::string& home, const std::string& file) {
  if (root.at(key).string().empty()) root.at(key).fail("expected a folder (an empty name would be the main folder)");
  const std::string dir = absolute(home, root.at(key).string());
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw IoError(file + ": \"" + key + "\" is " + dir +
                  ", which is not an existing folder (a drive that is not mounted?); create it or mount the "
                  "drive, or correct the file. QuantLab does not create the storage folders this file names.");
  return dir + "/QuantLab";
}

}  // namespace

void check_plain_name(const std::string& what, const std::string& name, const std::string& kind) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw Error(what + "='" + name + "': expected a plain " + kind + " (no '/', no leading '.')");
}

Storage read_storage(const std::string& home) {
  std::error_code ec;
  if (!fs::is_directory(home, ec)) throw Error("--home=" + home + ": no such folder");
  Storage s;
  s.home = fs::absolute(home).lexically_normal().string();
  if (s.home.size() > 1 && s.home.back() == '/') s.home.pop_back();
  const std::string file = s.home + "/cfg/hard_storage.json";
  if (fs::is_symlink(fs::symlink_status(file, ec)) && !fs::exists(file, ec))  // not silently the default storage
    throw IoError(file + " is a link to " + fs::read_symlink(file, ec).string() +
                  ", which does not exist; restore it, or remove the link to keep the storage in " + s.home +
                  "/storage");
  if (fs::exists(file, ec)) {
    const nlohmann::json j = config::read_json_file(file);
    const config::JsonNode root(j, file);
    root.allow_keys({"data", "logs"});
    s.data_root = root_of(root, "data", s.home, file);
    s.logs_root = root_of(root, "logs", s.home, file);
  } else {
    s.data_root = s.logs_root = s.home + "/storage/QuantLab";
  }
  return s;
}

std::vector<std::string> list_problems(const std::string& home) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(home, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (fs::is_regular_file(e.path() / "config.json", ec) || fs::is_directory(e.path() / "logs", ec))
      out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// " --home=DIR" for a command printed for the user when the main folder is not the current one.
std::string home_flag(const Storage& storage) {
  std::error_code ec;
  const fs::path here = fs::current_path(ec);
  if (!ec && fs::equivalent(here, storage.home, ec)) return "";
  return " --home=" + shell_word(storage.home);
}

// Whether one folder is the other or inside it (links resolved where they exist).
bool nested(const std::string& a, const std::string& b) {
  std::error_code ea, eb;
  const fs::path pa = fs::weakly_canonical(a, ea), pb = fs::weakly_canonical(b, eb);
  if (ea || eb) return false;  // unresolvable (a parent without access): not known to be nested
  for (auto ia = pa.begin(), ib = pb.begin(); ia != pa.end() && ib != pb.end(); ++ia, ++ib)
    if (*ia != *ib) return false;
  return true;
}

}  // namespace

ProblemPaths problem_paths(const Storage& storage, const std::string& problem) {
  check_plain_name("--problem", problem);
  ProblemPaths p;
  p.dir = storage.home + "/" + problem;
  p.data = p.dir + "/data";
  p.logs = p.dir + "/logs";
  std::error_code ec;
  if (!fs::is_directory(p.dir, ec)) {
    const auto known = list_problems(storage.home);
    throw Error("--problem=" + problem + ": no folder " + p.dir + " (" +
                (known.empty() ? std::string("this main folder has no problems") : "problems here: " + join(known)) +
                "); `quantlab problem add " + problem + home_flag(storage) + "` makes a new one");
  }
  return p;
}

void prepare_storage(const Storage& storage, const ProblemPaths& p) {
  const std::string problem = fs::path(p.dir).filename().string();
  check_link(p.data);
  check_link(p.logs);
  Undo undo;  // a failure (an unwritable root, /proc) leaves nothing of this call behind
  link_into(p.data, storage.data_root + "/" + problem + "/data", undo);
  link_into(p.logs, storage.logs_root + "/" + problem + "/logs", undo);
  probe_writable(p.logs);
  undo.commit();
}

std::vector<std::string> add_problem(const Storage& storage, const std::string& name) {
  check_plain_name("problem name", name);
  const std::string dir = storage.home + "/" + name;
  if (name == "cfg")
    throw Error("problem name 'cfg': the main folder's cfg/ holds hard_storage.json; choose another name");
  for (const std::string& root : {storage.data_root, storage.logs_root})
    if (nested(dir, root))
      throw Error("problem name '" + name + "': " + dir + " would hold, or be inside, the storage folder " + root +
                  " where every problem keeps its data and logs; choose another name");
  const std::string config = dir + "/config.json";
  if (fs::exists(fs::symlink_status(config))) throw Error(config + ": exists already; nothing was changed");
  Undo undo;
  make_dirs(dir, &undo);
  const ProblemPaths p = problem_paths(storage, name);
  prepare_storage(storage, p);  // all or nothing itself
  std::ofstream(config) << kProblemConfigTemplate;
  if (!fs::exists(config)) throw IoError(config + ": cannot write");
  undo.commit();
  return {"created " + config + " (a ternary MLP for 28x28 images: edit it to your problem)",
          "data folder " + p.data + " -> " + fs::canonical(p.data).string(),
          "logs folder " + p.logs + " -> " + fs::canonical(p.logs).string(),
          "copy the data there: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
          "t10k-labels-idx1-ubyte (optionally gzipped)",
          "then: quantlab --problem=" + shell_word(name) + " --topology=MLP" + home_flag(storage)};
}

}  // namespace quantlab::experiment
