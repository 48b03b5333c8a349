// Aligned text tables for terminal output.
//
// Example:
//   Table t({"MODE", "SIZE", "PROBES"}, {Align::kLeft, Align::kRight, ...});
//   t.AddRow({"stream", "1KiB", "400"});
//   out << t.Render();
//
// Not thread-safe (a value type).
#ifndef FLEETCANARY_CLI_UI_TABLE_H_
#define FLEETCANARY_CLI_UI_TABLE_H_

#include <string>
#include <vector>

namespace fleetcanary {
namespace cli {

enum class Align { kLeft, kRight };

class Table {
 public:
  // One alignment per header; missing alignments default to kLeft.
  explicit Table(std::vector<std::string> headers,
                 std::vector<Align> align = {});

  // REQUIRES: cells.size() == number of headers.
  void AddRow(std::vector<std::string> cells);

  // Columns separated by two spaces, padded to the widest cell (UTF-8 aware),
  // no trailing spaces; one line per row, header first.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// Display width of a UTF-8 string (code points; no wide-character tables).
size_t DisplayWidth(const std::string& s);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_UI_TABLE_H_
