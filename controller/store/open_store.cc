// Store selection by URL.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                                 absl::string_view what) {
  absl::string_view rest(url);
  if (absl::StartsWith(url, "postgresql://") ||
      absl::StartsWith(url, "postgres://")) {
    PostgresStoreOptions options;
    options.url = url;
    return CreatePostgresStore(options);
  }
  if (absl::ConsumePrefix(&rest, "sqlite:")) {
    // sqlite:///abs/path keeps its leading slash; sqlite://rel and sqlite:rel
    // are relative.
    if (absl::StartsWith(rest, "//")) rest.remove_prefix(2);
    if (rest.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": sqlite URL without a path"));
    }
    return CreateSqliteStore({std::string(rest)});
  }
  if (url == "memory:") return CreateMemoryStore();
  return absl::InvalidArgumentError(
      absl::StrCat(what,
                   ": unsupported store URL (want sqlite:///path.db or "
                   "postgresql://user@host:port/db)"));
}

std::string RedactStoreUrl(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t at = url.find('@', scheme + 3);
  if (at == std::string::npos) return url;
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace controller
}  // namespace fleetcanary
