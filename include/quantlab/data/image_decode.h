// Decoding image files into 8-bit RGB: JPEG with libjpeg-turbo (colour, grayscale, CMYK/YCCK),
// and PNG with libpng (ImageNet holds a PNG under a .JPEG name). JPEGs can be decoded at a
// reduced size (1/8 .. 7/8, done in the DCT, so far cheaper than decoding whole and shrinking):
// the caller says how much shrinking the image can take without being enlarged again later.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantlab/util/error.h"

namespace quantlab::data {

// The file is not an image this decoder can read; the message says why.
class DecodeError : public Error {
 public:
  explicit DecodeError(const std::string& what) : Error(what) {}
};

struct ImageSize {
  int width = 0, height = 0;
};

// Decoded pixels. The buffer is reused by the next decode into the same RgbImage (a worker keeps
// one), so decoding allocates nothing once it has seen its largest image.
struct RgbImage {
  int width = 0, height = 0;    // of the decoded pixels
  double scale = 1.0;           // decoded size / the file's full size
  std::vector<uint8_t> buffer;  // [height, width, 3] at the front (the CMYK path needs 4 per pixel)
  const uint8_t* pixels() const { return buffer.data(); }
  // Makes room for n bytes without clearing them.
  uint8_t* reserve(size_t n);
};

// The full size of the image in `bytes` (JPEG or PNG), from its header.
ImageSize image_size(const std::string& bytes);

// Decodes `bytes`; a JPEG is decoded at the smallest available scale s with s >= min_scale
// (min_scale >= 1 or a PNG: full size). Throws DecodeError for anything that is not a complete,
// readable JPEG or PNG (a truncated JPEG is an error; libjpeg's warnings about stray bytes, which
// PIL also ignores, are not).
RgbImage decode_image(const std::string& bytes, double min_scale = 1.0);
void decode_image(const std::string& bytes, double min_scale, RgbImage& out);

// Reads a whole file; throws IoError when it cannot be opened or read, DecodeError when it is empty.
std::string read_file_bytes(const std::string& path);
void read_file_bytes(const std::string& path, std::string& bytes);

}  // namespace quantlab::data
