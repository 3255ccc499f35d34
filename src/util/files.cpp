// require_new_file, publish_file, sync_folder: lstat, link(), rename() and fsync().
#include "quantlab/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "quantlab/util/error.h"

namespace quantlab {

namespace fs = std::filesystem;

void require_new_file(const std::string& flag, const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    const char* kind = S_ISLNK(st.st_mode)   ? "a symbolic link"
                       : S_ISDIR(st.st_mode) ? "a folder"
                       : S_ISREG(st.st_mode) ? "a file"
                                             : "a device or special file";
    throw IoError(flag + "=" + path + ": " + kind + " is there already; QuantLab never replaces what it did not " +
                  "write: choose another name, or remove it first");
  }
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    throw IoError(flag + "=" + path + ": the folder " + parent.string() +
                  " does not exist (QuantLab does not create it); make it first");
}

void sync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err == EIO) throw IoError(folder + ": cannot sync the folder (" + std::strerror(err) + ")");
}

std::string temporary_beside(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

void publish_file(const std::string& tmp, const std::string& path, bool replace) {
  const std::string folder = fs::path(path).has_parent_path() ? fs::path(path).parent_path().string() : ".";
  // Its contents on the disk before its name: a power cut never leaves an empty file under it.
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError(path + ": cannot write (" + std::strerror(err) + ")");
  }
  ::close(fd);
  if (replace) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      ::unlink(tmp.c_str());
      throw IoError(path + ": not a regular file (a link, folder or device is left alone); nothing was written");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      throw IoError(path + ": cannot write (" + std::strerror(err) + ")");
    }
    sync_folder(folder);  // a failing disk: the new version is there, but may not survive
    return;
  }
  // link() fails where anything exists: nothing is ever replaced, even by a file that appeared
  // while this one was written.
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0)
    throw IoError(path + (err == EEXIST ? std::string(": appeared while it was written; it is left alone")
                                        : ": cannot write (" + std::string(std::strerror(err)) + ")"));
  try {
    sync_folder(folder);
  } catch (const IoError&) {  // its name may not survive: not made (a new name is QuantLab's own)
    ::unlink(path.c_str());
    throw;
  }
}

}  // namespace quantlab
