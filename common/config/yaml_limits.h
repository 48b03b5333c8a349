// Resource limits for untrusted YAML, checked while parsing.
//
// A YAML document is a graph: an alias (*a) repeats its anchored node (&a)
// without copying it, so a few kilobytes of nested aliases ("billion
// laughs") expand to billions of nodes once a consumer walks them. Every
// YAML this project reads (fleet and controller files, admin tokens, the
// emulator's scenarios, including those uploaded on its control port) is
// checked here first, in one streaming pass over the parser's events that
// keeps only a counter per anchor: the document's size, nesting depth,
// alias count and the number of nodes it expands to are bounded before
// anything is built from it.
//
// Thread-safety: stateless; safe from any thread.
#ifndef FLEETCANARY_COMMON_CONFIG_YAML_LIMITS_H_
#define FLEETCANARY_COMMON_CONFIG_YAML_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fleetcanary {

struct YamlLimits {
  // Bytes of YAML text.
  uint64_t max_bytes = 4 << 20;
  // Nesting of sequences and maps.
  int max_depth = 64;
  // Alias uses (*name).
  uint64_t max_aliases = 10000;
  // Nodes once every alias is expanded (what a consumer walks).
  uint64_t max_expanded_nodes = 200000;
};

// OK when `yaml` is within `limits`. Otherwise INVALID_ARGUMENT naming the
// limit that was hit and where, e.g.
//   "fleet.yaml:3:5: YAML expands to more than 200000 nodes (aliases
//   repeat their anchors); limit max_expanded_nodes"
// Syntax errors are left to the real parse (OK here unless they make the
// limits unknowable).
absl::Status CheckYamlLimits(absl::string_view yaml,
                             absl::string_view source_name,
                             const YamlLimits& limits = YamlLimits());

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_CONFIG_YAML_LIMITS_H_
