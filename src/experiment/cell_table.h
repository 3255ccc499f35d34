// The text cells of compare's tables (experiment/compare.h): numbers as cells, and rows of cells
// printed as a table, CSV or Markdown. Private to src/experiment.
#pragma once

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>
#include <vector>

namespace quantlab::experiment::cell_table {

// An accuracy in percent with two decimals, "-" when not measured.
std::string percent_cell(const nlohmann::json& v);
// Seconds as "42s", "3m07s" or "2h05m", "-" when not measured.
std::string duration(const nlohmann::json& seconds);
// Rows of text cells under a header, as a table, CSV or Markdown.
void print_cells(const std::string& format, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& cells, std::ostream& out);

}  // namespace quantlab::experiment::cell_table
