#include "cli/ui/table.h"

#include <algorithm>
#include <cassert>

namespace fleetcanary {
namespace cli {

size_t DisplayWidth(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;  // Count lead bytes only.
  }
  return n;
}

Table::Table(std::vector<std::string> headers, std::vector<Align> align)
    : headers_(std::move(headers)), align_(std::move(align)) {
  align_.resize(headers_.size(), Align::kLeft);
}

void Table::AddRow(std::vector<std::string> cells) {
  assert(cells.size() == headers_.size());
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> width(headers_.size(), 0);
  for (size_t i = 0; i < headers_.size(); ++i) {
    width[i] = DisplayWidth(headers_[i]);
    for (const auto& row : rows_) {
      width[i] = std::max(width[i], DisplayWidth(row[i]));
    }
  }
  std::string out;
  auto render_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      const size_t pad = width[i] - DisplayWidth(cells[i]);
      if (i > 0) line.append("  ");
      if (align_[i] == Align::kRight) line.append(pad, ' ');
      line.append(cells[i]);
      if (align_[i] == Align::kLeft) line.append(pad, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out.append(line).append("\n");
  };
  render_row(headers_);
  for (const auto& row : rows_) render_row(row);
  return out;
}

}  // namespace cli
}  // namespace fleetcanary
