#include "cli/ui/table.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace cli {
namespace {

TEST(TableTest, AlignsColumnsLeftAndRight) {
  Table t({"MODE", "SIZE", "P50"},
          {Align::kLeft, Align::kRight, Align::kRight});
  t.AddRow({"buffered", "2B", "1.2ms"});
  t.AddRow({"stream", "64KiB", "13.0ms"});
  EXPECT_EQ(t.Render(),
            "MODE       SIZE     P50\n"
            "buffered     2B   1.2ms\n"
            "stream    64KiB  13.0ms\n");
}

TEST(TableTest, NoTrailingSpacesAndUtf8Width) {
  Table t({"A", "B"});
  t.AddRow({"µs", "x"});
  t.AddRow({"long cell", ""});
  EXPECT_EQ(t.Render(),
            "A          B\n"
            "µs         x\n"
            "long cell\n");
  EXPECT_EQ(DisplayWidth("µs"), 2u);
}

}  // namespace
}  // namespace cli
}  // namespace fleetcanary
