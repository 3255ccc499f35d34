// The exceptions library code throws; only main() turns them into a message and an exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace quantlab {

// Base of every error QuantLab reports to its user.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A configuration value is wrong; the message starts with its JSON path.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what) {}
};

// A file or folder could not be read or written; the message names it.
class IoError : public Error {
 public:
  explicit IoError(const std::string& what) : Error(what) {}
};

}  // namespace quantlab
