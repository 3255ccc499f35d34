// The text cells of compare's tables.
#include "cell_table.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <ostream>
#include <sstream>

namespace quantlab::experiment::cell_table {
namespace {

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::string percent_cell(const nlohmann::json& v) {
  if (!v.is_number()) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << v.get<double>();
  return s.str();
}

std::string duration(const nlohmann::json& seconds) {
  if (!seconds.is_number()) return "-";
  const int64_t s = static_cast<int64_t>(std::llround(seconds.get<double>()));
  std::ostringstream o;
  if (s >= 3600)
    o << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s / 60) % 60 << "m";
  else if (s >= 60)
    o << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  else
    o << s << "s";
  return o.str();
}

// Rows of text cells under a header, as a table, CSV or Markdown.
void print_cells(const std::string& format, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& cells, std::ostream& out) {
  if (format == "csv") {
    for (size_t k = 0; k < header.size(); ++k) out << (k ? "," : "") << csv_cell(header[k]);
    out << "\n";
    for (const auto& c : cells) {
      for (size_t k = 0; k < c.size(); ++k) out << (k ? "," : "") << csv_cell(c[k]);
      out << "\n";
    }
    out << std::flush;
    return;
  }
  if (format == "markdown") {
    auto line = [&out](const std::vector<std::string>& c) {
      out << "|";
      for (const auto& s : c) {
        std::string e;
        for (char ch : s) e += ch == '|' ? std::string("\\|") : std::string(1, ch);
        out << " " << e << " |";
      }
      out << "\n";
    };
    line(header);
    out << "|";
    for (size_t k = 0; k < header.size(); ++k) out << "---|";
    out << "\n";
    for (const auto& c : cells) line(c);
    out << std::flush;
    return;
  }
  std::vector<size_t> width(header.size());
  for (size_t k = 0; k < header.size(); ++k) width[k] = header[k].size();
  for (const auto& c : cells)
    for (size_t k = 0; k < c.size(); ++k) width[k] = std::max(width[k], c[k].size());
  auto line = [&](const std::vector<std::string>& c) {
    for (size_t k = 0; k < c.size(); ++k) out << std::left << std::setw(static_cast<int>(width[k]) + 2) << c[k];
    out << "\n";
  };
  line(header);
  for (const auto& c : cells) line(c);
}

// The config paths whose values are not the same in every row (present in some rows only, too).

}  // namespace quantlab::experiment::cell_table
