// valprep: check every move, then move.
#include "quantlab/data/valprep.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "quantlab/util/error.h"

namespace quantlab::data {
namespace fs = std::filesystem;
namespace {

std::vector<std::string> tokens(const std::string& line) {
  std::string s = line;
  for (char& c : s)
    if (c == ',' || c == '\t' || c == '\r') c = ' ';
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

bool looks_like_wnid(const std::string& s) {
  if (s.size() < 2 || s[0] != 'n') return false;
  for (size_t i = 1; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// image name -> wnid, from the label file's lines.
std::map<std::string, std::string> read_labels(const std::string& file) {
  std::error_code ec;
  if (fs::is_directory(file, ec)) throw IoError(file + ": a folder, not a label file");
  std::ifstream in(file);
  if (!in) throw IoError(file + ": cannot open the label file");
  std::map<std::string, std::string> labels;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (n == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte order mark
    if (!line.empty() && line.back() == '\r') line.pop_back();           // CRLF
    auto t = tokens(line);
    if (t.empty() || t[0][0] == '#' || t[0] == "ImageId" || t[0] == "mkdir" || t[0] == "#!/bin/bash") continue;
    if (t[0] == "mv") t.erase(t.begin());
    if (t.size() < 2)
      throw IoError(file + ":" + std::to_string(n) + ": expected an image and its wnid, got \"" + line + "\"");
    std::string wnid = t[1];
    while (!wnid.empty() && wnid.back() == '/') wnid.pop_back();
    if (!looks_like_wnid(wnid))
      throw IoError(file + ":" + std::to_string(n) + ": \"" + t[1] + "\" is not a WordNet id (n01440764, ...)");
    const std::string& image = t[0];
    if (image == "." || image == ".." || image.find('/') != std::string::npos || image.find('\\') != std::string::npos)
      throw IoError(file + ":" + std::to_string(n) + ": \"" + image +
                    "\" is not a plain file name of the images folder (a path: valprep moves only the folder's own "
                    "files); nothing was moved");
    if (!labels.emplace(t[0], wnid).second)
      throw IoError(file + ":" + std::to_string(n) + ": " + t[0] + " is listed twice");
  }
  if (labels.empty()) throw IoError(file + ": no labels in the file");
  return labels;
}

}  // namespace

ValprepReport sort_validation_images(const std::string& images_dir, const std::string& label_file,
                                     const std::string& out_dir) {
  std::error_code ec;
  if (!fs::is_directory(images_dir, ec)) throw IoError(images_dir + ": no such folder");
  const auto labels = read_labels(label_file);
  // Plan: every listed image must exist (with or without its .JPEG) and its destination must not.
  std::vector<std::pair<fs::path, fs::path>> moves;
  std::set<std::string> listed, classes;
  std::vector<std::string> missing, taken;
  int64_t already = 0;
  for (const auto& [name, wnid] : labels) {
    fs::path src = fs::path(images_dir) / name;
    if (!fs::is_regular_file(src, ec) && fs::is_regular_file(src.string() + ".JPEG", ec)) src += ".JPEG";
    if (!fs::is_regular_file(src, ec)) {
      const fs::path done = fs::path(out_dir) / wnid / src.filename();
      if (fs::is_regular_file(done, ec) || fs::is_regular_file(done.string() + ".JPEG", ec)) {
        ++already;  // moved by an earlier, interrupted run
        classes.insert(wnid);
      } else {
        missing.push_back(src.string());
      }
      continue;
    }
    const fs::path dst = fs::path(out_dir) / wnid / src.filename();
    if (fs::exists(fs::symlink_status(dst, ec))) taken.push_back(dst.string());
    if (!listed.insert(src.filename().string()).second)
      throw IoError(label_file + ": " + name + " and another line name the same image, " + src.string() +
                    "; nothing was moved");
    classes.insert(wnid);
    moves.emplace_back(src, dst);
  }
  const auto some = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 3; ++i) s += (i ? ", " : "") + v[i];
    return s + (v.size() > 3 ? ", ... (" + std::to_string(v.size()) + " in all)" : "");
  };
  std::vector<std::string> not_folders;  // a class folder's name taken by a file
  for (const auto& wnid : classes) {
    const fs::path d = fs::path(out_dir) / wnid;
    if (fs::exists(fs::symlink_status(d, ec)) && !fs::is_directory(d, ec)) not_folders.push_back(d.string());
  }
  if (!missing.empty())
    throw IoError("the label file lists images that are not there: " + some(missing) + "; nothing was moved");
  if (!not_folders.empty())
    throw IoError(some(not_folders) + ": not a folder, where the class folder goes; nothing was moved");
  if (!taken.empty()) throw IoError("refusing to overwrite " + some(taken) + "; nothing was moved");
  ValprepReport report;
  report.already_there = already;
  for (const auto& e : fs::directory_iterator(images_dir, ec))
    if (e.is_regular_file() && !listed.count(e.path().filename().string()))
      report.unlisted.push_back(e.path().filename().string());
  for (const auto& [src, dst] : moves) {
    fs::create_directories(dst.parent_path(), ec);
    if (ec) throw IoError(dst.parent_path().string() + ": cannot create the folder (" + ec.message() + ")");
    // A link to the image: a link to where it leads (a relative one, moved a folder deeper, would
    // lead nowhere), made where it goes and never over a file.
    if (fs::is_symlink(fs::symlink_status(src, ec))) {
      fs::path target = fs::read_symlink(src, ec);
      if (!ec && target.is_relative()) target = fs::absolute(src.parent_path() / target, ec).lexically_normal();
      if (!ec) fs::create_symlink(target, dst, ec);
      if (ec)
        throw IoError("cannot move the link " + src.string() + " to " + dst.string() + " (" + ec.message() +
                      ") after " + std::to_string(report.moved) + " images were moved; run again to move the rest");
      fs::remove(src, ec);
      ++report.moved;
      continue;
    }
    // link() + unlink(): a move that fails rather than replace a file that appeared meanwhile.
    if (::link(src.c_str(), dst.c_str()) == 0) {
      ::unlink(src.c_str());
    } else if (errno == EEXIST) {
      throw IoError("refusing to overwrite " + dst.string() + " (it appeared during the move) after " +
                    std::to_string(report.moved) + " images were moved");
    } else {  // another file system: a hidden copy beside it, linked into place (never over a file),
              // so that a kill during the copy leaves no partial image under the image's name
      const fs::path part = dst.parent_path() / ("." + dst.filename().string() + ".part");
      fs::copy_file(src, part, fs::copy_options::overwrite_existing, ec);
      if (!ec && ::link(part.c_str(), dst.c_str()) != 0) ec = std::error_code(errno, std::generic_category());
      std::error_code removed;
      fs::remove(part, removed);
      if (ec)
        throw IoError("cannot move " + src.string() + " to " + dst.string() + " (" + ec.message() + ") after " +
                      std::to_string(report.moved) + " images were moved; run again to move the rest");
      fs::remove(src, ec);
    }
    ++report.moved;
  }
  report.classes = static_cast<int64_t>(classes.size());
  return report;
}

std::string valprep_report(const ValprepReport& r, const std::string& images_dir, const std::string& out_dir) {
  std::string text = "moved " + std::to_string(r.moved) + " images into " + std::to_string(r.classes) +
                     " class folders under " + out_dir;
  if (r.already_there > 0) text += " (" + std::to_string(r.already_there) + " were already there)";
  text += "\n";
  if (!r.unlisted.empty())
    text += std::to_string(r.unlisted.size()) + " files of " + images_dir +
            " are not in the label file and stayed: " + r.unlisted.front() + (r.unlisted.size() > 1 ? ", ..." : "") +
            "\n";
  return text;
}

}  // namespace quantlab::data
