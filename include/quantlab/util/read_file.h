// Reading the files a user points QuantLab at (data sets, label files, configs) with bounds: only
// regular files (a FIFO would block forever, /dev/zero never ends), and never more bytes than the
// format declares or the machine holds (a small .gz can inflate to gigabytes). Used by the data
// pipeline and by the integer runtime (which links nothing else of QuantLab).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace quantlab {

// Throws IoError naming `file` unless it is a regular file (links are followed): missing, a
// folder, a FIFO, a device.
void require_regular_file(const std::string& file, const std::string& what = "file");

// The memory of this machine in bytes: the bound of what a file may declare.
size_t machine_memory_bytes();

// An IDX file (plain or gzip-compressed): its header, then exactly the data bytes the header
// declares. Throws IoError naming the file when it is not a regular file, not IDX, truncated,
// longer than its header says, or declares more bytes than the machine's memory.
struct IdxBytes {
  std::vector<int64_t> dims;
  std::vector<unsigned char> data;  // prod(dims) bytes
};
IdxBytes read_idx_bytes(const std::string& file);

// A whole regular file of at most `limit` bytes (plain; not decompressed). Throws IoError naming
// the file when it is larger, with `what` saying what it should have been.
std::string read_small_file(const std::string& file, size_t limit, const std::string& what);

}  // namespace quantlab
