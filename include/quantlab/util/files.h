// Files QuantLab writes where a user names the place (export --out, infer --labels): never over
// anything that is there (a file, a link, a device), never into a folder that does not exist.
#pragma once

#include <string>

namespace quantlab {

// Throws IoError naming `flag` and `path` when anything exists at `path` (links are not followed)
// or when its folder does not exist or is not a folder.
void require_new_file(const std::string& flag, const std::string& path);

// A temporary name beside `path` for writing it first: "<path>.tmp.<pid>".
std::string temporary_beside(const std::string& path);

// Makes a rename in `folder` durable (fsync of the folder). A file system that cannot sync folders
// (EINVAL), or a folder that cannot be opened, is left as it is; a disk that fails to (EIO) throws
// IoError: what was just named may not survive a power cut.
void sync_folder(const std::string& folder);

// Moves the finished `tmp` to `path`, its contents synced before and its folder after. `replace`:
// an existing regular file at `path` is replaced (QuantLab's own outputs); otherwise anything at
// `path` is left alone and IoError is thrown, and a new name whose folder fails to sync is removed.
// `tmp` is removed either way.
void publish_file(const std::string& tmp, const std::string& path, bool replace);

}  // namespace quantlab
