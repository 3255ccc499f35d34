// Bounded readers: stat before open, gzread to the declared size and one byte more.
#include "quantlab/util/read_file.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "quantlab/util/error.h"

namespace quantlab {

void require_regular_file(const std::string& file, const std::string& what) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw IoError(file + ": cannot open the " + what + " (" + std::strerror(errno) + ")");
  if (S_ISREG(st.st_mode)) return;
  const char* kind = S_ISDIR(st.st_mode)                          ? "a folder"
                     : S_ISFIFO(st.st_mode)                       ? "a FIFO (reading it could wait forever)"
                     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                  : "not a regular file";
  throw IoError(file + ": is " + std::string(kind) + ", not a " + what + " QuantLab reads");
}

size_t machine_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(size)
                               : std::numeric_limits<size_t>::max();
}

namespace {

std::string gz_error(gzFile f) {
  int err = 0;
  const char* msg = gzerror(f, &err);
  return err != Z_OK && msg ? msg : "";
}

// Reads up to `n` bytes into `out`; returns how many it read (fewer only at the end of the data).
size_t read_up_to(gzFile f, unsigned char* out, size_t n, const std::string& file) {
  size_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    const int got = gzread(f, out + done, chunk);
    if (got < 0) throw IoError(file + ": corrupt or truncated compressed data (" + gz_error(f) + ")");
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

bool read_exactly(gzFile f, unsigned char* out, size_t n, const std::string& file) {
  return read_up_to(f, out, n, file) == n;
}

}  // namespace

IdxBytes read_idx_bytes(const std::string& file) {
  require_regular_file(file, "IDX file");
  gzFile f = gzopen(file.c_str(), "rb");  // reads plain files too
  if (!f) throw IoError(file + ": cannot open for reading");
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  unsigned char magic[4];
  if (!read_exactly(f, magic, 4, file) || magic[0] != 0 || magic[1] != 0)
    throw IoError(file + ": not an IDX file (bad magic number)");
  if (magic[2] != 0x08) throw IoError(file + ": only unsigned-byte IDX data is supported");
  const int ndim = magic[3];
  if (ndim < 1 || ndim > 4) throw IoError(file + ": unsupported IDX rank " + std::to_string(ndim));
  IdxBytes r;
  unsigned char dims[16];
  if (!read_exactly(f, dims, 4 * static_cast<size_t>(ndim), file)) throw IoError(file + ": truncated header");
  size_t count = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; ++d) {
    const unsigned char* p = dims + 4 * d;
    const uint64_t n = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | uint64_t(p[3]);
    r.dims.push_back(static_cast<int64_t>(n));
    overflow = overflow || __builtin_mul_overflow(count, n, &count);
  }
  if (overflow) throw IoError(file + ": its header declares more data than any file can hold (corrupt file)");
  // Before the memory is taken: a plain file holds exactly its header's data, and deflate cannot
  // expand a .gz file by more than 1032 times (a truncated or corrupt header asking for gigabytes
  // fails here, not after zero-filling them).
  struct stat st {};
  ::stat(file.c_str(), &st);
  const auto on_disk = static_cast<size_t>(st.st_size), header = 4 + 4 * static_cast<size_t>(ndim);
  if (gzdirect(f) ? count + header > on_disk : count / 1032 > on_disk)
    throw IoError(file + ": its header declares " + std::to_string(count) + " data bytes, more than the " +
                  std::to_string(on_disk) + "-byte file can hold (truncated or corrupt file)");
  if (const size_t cap = machine_memory_bytes(); count > cap)
    throw IoError(file + ": its " + std::to_string(count >> 20) + " MiB of data are more than this machine's memory (" +
                  std::to_string(cap >> 20) + " MiB)");
  r.data.resize(count);
  if (const size_t got = read_up_to(f, r.data.data(), count, file); got != count)
    throw IoError(file + ": expected " + std::to_string(count) + " data bytes after the header, found " +
                  std::to_string(got) + " (truncated or corrupt file)");
  unsigned char extra;
  if (read_exactly(f, &extra, 1, file))
    throw IoError(file + ": more data than its header declares (" + std::to_string(count) +
                  " bytes); corrupt, or not the file it is named after");
  return r;
}

std::string read_small_file(const std::string& file, size_t limit, const std::string& what) {
  require_regular_file(file, what);
  struct stat st {};
  ::stat(file.c_str(), &st);
  if (static_cast<size_t>(st.st_size) > limit)
    throw IoError(file + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(limit >> 10) +
                  " KiB a " + what + " may have");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace quantlab
