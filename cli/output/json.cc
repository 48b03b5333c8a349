#include "cli/output/json.h"

#include "common/config/loader.h"

namespace fleetcanary {
namespace cli {

void PrintJson(const google::protobuf::Message& msg, std::ostream* out) {
  std::string json = MessageToJson(msg, /*pretty=*/true);
  if (json.empty() || json.back() != '\n') json.push_back('\n');
  *out << json;
}

void PrintJsonLine(const google::protobuf::Message& msg, std::ostream* out) {
  *out << MessageToJson(msg, /*pretty=*/false) << "\n";
}

}  // namespace cli
}  // namespace fleetcanary
