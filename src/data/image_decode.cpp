// JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng's simplified API) decoding.
#include "quantlab/data/image_decode.h"

#include <png.h>
#include <turbojpeg.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace quantlab::data {
namespace {

bool is_png(const std::string& b) { return b.size() >= 8 && std::memcmp(b.data(), "\x89PNG\r\n\x1a\n", 8) == 0; }

// One TurboJPEG decompressor per thread, created on first use.
tjhandle decompressor() {
  struct Handle {
    tjhandle h = tjInitDecompress();
    ~Handle() {
      if (h) tjDestroy(h);
    }
  };
  thread_local Handle handle;
  if (!handle.h) throw DecodeError("cannot create a JPEG decompressor");
  return handle.h;
}

// Larger images are refused as PIL refuses them (its decompression-bomb limit), before any pixel
// is decoded: a corrupt or hostile header must not take gigabytes in every worker.
constexpr int64_t kMaxPixels = 178956970;

void check_size(int64_t width, int64_t height) {
  if (width * height > kMaxPixels)
    throw DecodeError(std::to_string(width) + " x " + std::to_string(height) + " pixels, more than the " +
                      std::to_string(kMaxPixels) + " an image may have (as PIL's limit)");
}

struct JpegHeader {
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
};

JpegHeader jpeg_header(tjhandle h, const std::string& b) {
  JpegHeader hd;
  if (tjDecompressHeader3(h, reinterpret_cast<const unsigned char*>(b.data()), static_cast<unsigned long>(b.size()),
                          &hd.width, &hd.height, &hd.subsamp, &hd.colorspace) != 0)
    throw DecodeError(std::string("not a JPEG or PNG image (") + tjGetErrorStr2(h) + ")");
  if (hd.width <= 0 || hd.height <= 0) throw DecodeError("the JPEG header gives an empty image");
  check_size(hd.width, hd.height);
  return hd;
}

void decode_png(const std::string& b, RgbImage& out) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, b.data(), b.size()))
    throw DecodeError(std::string("unreadable PNG (") + image.message + ")");
  // As PIL reads a PNG for torchvision (convert("RGB")): 16-bit samples scaled to 8 bits as they
  // are (sRGB values, not linear light, which libpng would gamma-encode: grey 32768 -> 186), and
  // the alpha channel dropped, not blended onto black.
  try {
    check_size(image.width, image.height);
  } catch (const DecodeError&) {
    png_image_free(&image);
    throw;
  }
  image.format = PNG_FORMAT_RGBA;
  image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  out.scale = 1.0;
  uint8_t* px = out.reserve(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, px, 0, nullptr)) {
    const std::string why = image.message;
    png_image_free(&image);
    throw DecodeError("unreadable PNG (" + why + ")");
  }
  const size_t n = static_cast<size_t>(image.width) * image.height;
  for (size_t i = 0; i < n; ++i)  // RGBA -> RGB in place (each pixel moves down, never onto one unread)
    for (size_t c = 0; c < 3; ++c) px[3 * i + c] = px[4 * i + c];
}

}  // namespace

uint8_t* RgbImage::reserve(size_t n) {
  if (buffer.size() < n) buffer = std::vector<uint8_t>(n);  // grows only; never cleared again
  return buffer.data();
}

void read_file_bytes(const std::string& path, std::string& bytes) {
  // A file that cannot be read is the file system's trouble (a network file system's hiccup, a
  // permission), not the image's: an IoError that stops the run, never an image skipped for good.
  // One open and one fstat per image: the size and the kind come from the open file.
  const auto fail = [&](const char* what, int err) {
    return IoError(path + ": " + what + " (" + std::strerror(err ? err : EIO) + ")");
  };
  // O_NONBLOCK: a FIFO in the image folder is refused below instead of blocking the open.
  struct File {
    int fd;
    ~File() {
      if (fd >= 0) ::close(fd);
    }
  } const file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  const int fd = file.fd;
  if (fd < 0) throw fail("cannot open the image", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw fail("cannot read the image's size", errno);
  if (!S_ISREG(st.st_mode)) throw IoError(path + ": not a regular file");
  // Blocking reads from here on (a FUSE file system passes O_NONBLOCK on to its daemon).
  if (const int flags = ::fcntl(fd, F_GETFL); flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
    throw fail("cannot read the image", errno);
  if (st.st_size == 0) throw DecodeError("empty file");
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw fail("cannot read the image", errno);
    if (got == 0) throw IoError(path + ": the image ended early (the file shrank while it was read)");
    done += static_cast<size_t>(got);
  }
}

std::string read_file_bytes(const std::string& path) {
  std::string bytes;
  read_file_bytes(path, bytes);
  return bytes;
}

ImageSize image_size(const std::string& bytes) {
  if (is_png(bytes)) {
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
      throw DecodeError(std::string("unreadable PNG (") + image.message + ")");
    ImageSize s{static_cast<int>(image.width), static_cast<int>(image.height)};
    png_image_free(&image);
    return s;
  }
  const JpegHeader hd = jpeg_header(decompressor(), bytes);
  return {hd.width, hd.height};
}

RgbImage decode_image(const std::string& bytes, double min_scale) {
  RgbImage out;
  decode_image(bytes, min_scale, out);
  return out;
}

void decode_image(const std::string& bytes, double min_scale, RgbImage& out) {
  if (is_png(bytes)) return decode_png(bytes, out);
  tjhandle h = decompressor();
  const JpegHeader hd = jpeg_header(h, bytes);
  // The smallest scaling factor >= min_scale (TurboJPEG lists them largest first).
  tjscalingfactor chosen{1, 1};
  if (min_scale < 1.0) {
    int n = 0;
    const tjscalingfactor* factors = tjGetScalingFactors(&n);
    for (int i = 0; i < n; ++i) {
      const double s = static_cast<double>(factors[i].num) / factors[i].denom;
      if (s >= min_scale && s <= static_cast<double>(chosen.num) / chosen.denom) chosen = factors[i];
    }
  }
  out.width = TJSCALED(hd.width, chosen);
  out.height = TJSCALED(hd.height, chosen);
  out.scale = static_cast<double>(out.width) / hd.width;
  const bool cmyk = hd.colorspace == TJCS_CMYK || hd.colorspace == TJCS_YCCK;
  const size_t n = static_cast<size_t>(out.width) * out.height;
  uint8_t* raw = out.reserve(n * (cmyk ? 4 : 3));
  const int rc =
      tjDecompress2(h, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()),
                    raw, out.width, 0, out.height, cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_ACCURATEDCT);
  if (rc != 0) {
    const std::string why = tjGetErrorStr2(h);
    // Warnings leave a complete image, except a premature end of data (a truncated file).
    if (tjGetErrorCode(h) != TJERR_WARNING || why.find("Premature end") != std::string::npos)
      throw DecodeError("corrupt JPEG (" + why + ")");
  }
  if (!cmyk) return;
  // libjpeg hands out Adobe's inverted CMYK: R = C' * K' / 255 (as OpenCV and PIL do). In place:
  // pixel p's 3 bytes never overtake pixel p's 4.
  for (size_t p = 0; p < n; ++p) {
    const unsigned k = raw[4 * p + 3];
    const unsigned c0 = raw[4 * p], c1 = raw[4 * p + 1], c2 = raw[4 * p + 2];
    raw[3 * p] = static_cast<uint8_t>((c0 * k + 127) / 255);
    raw[3 * p + 1] = static_cast<uint8_t>((c1 * k + 127) / 255);
    raw[3 * p + 2] = static_cast<uint8_t>((c2 * k + 127) / 255);
  }
}

}  // namespace quantlab::data
