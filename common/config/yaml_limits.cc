#include "common/config/yaml_limits.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/depthguard.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/parser.h"

namespace fleetcanary {
namespace {

// Thrown out of the parser's callbacks to stop at the first limit hit.
struct LimitHit {
  YAML::Mark mark;
  std::string message;
};

class LimitCounter : public YAML::EventHandler {
 public:
  explicit LimitCounter(const YamlLimits& limits) : limits_(limits) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Leaf(mark, anchor, 1);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&,
                YAML::anchor_t anchor, const std::string&) override {
    Leaf(mark, anchor, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (++aliases_ > limits_.max_aliases) {
      throw LimitHit{mark, absl::StrCat("more than ", limits_.max_aliases,
                                        " aliases; limit max_aliases")};
    }
    const uint64_t size =
        anchor < anchor_sizes_.size() ? anchor_sizes_[anchor] : 1;
    Leaf(mark, 0, size);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&,
                       YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&,
                  YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Open_ {
    YAML::anchor_t anchor;
    uint64_t nodes_at_start;
  };

  void Add(const YAML::Mark& mark, uint64_t n) {
    nodes_ += n;
    if (nodes_ > limits_.max_expanded_nodes) {
      throw LimitHit{
          mark,
          absl::StrCat("YAML expands to more than ", limits_.max_expanded_nodes,
                       " nodes (aliases repeat their anchors); limit "
                       "max_expanded_nodes")};
    }
  }
  void SetAnchor(YAML::anchor_t anchor, uint64_t size) {
    if (anchor == 0) return;
    if (anchor >= anchor_sizes_.size()) anchor_sizes_.resize(anchor + 1, 1);
    anchor_sizes_[anchor] = size;
  }
  void Leaf(const YAML::Mark& mark, YAML::anchor_t anchor, uint64_t size) {
    Add(mark, size);
    SetAnchor(anchor, size);
  }
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (static_cast<int>(stack_.size()) >= limits_.max_depth) {
      throw LimitHit{mark,
                     absl::StrCat("nesting deeper than ", limits_.max_depth,
                                  " levels; limit max_depth")};
    }
    Add(mark, 1);
    stack_.push_back({anchor, nodes_ - 1});
  }
  void Close() {
    if (stack_.empty()) return;
    const Open_ o = stack_.back();
    stack_.pop_back();
    SetAnchor(o.anchor, nodes_ - o.nodes_at_start);
  }

  const YamlLimits limits_;
  uint64_t nodes_ = 0;
  uint64_t aliases_ = 0;
  std::vector<Open_> stack_;
  // Expanded size of each anchor, by the parser's anchor id.
  std::vector<uint64_t> anchor_sizes_;
};

}  // namespace

absl::Status CheckYamlLimits(absl::string_view yaml,
                             absl::string_view source_name,
                             const YamlLimits& limits) {
  if (yaml.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ": YAML of ", yaml.size(), " bytes is above the limit of ",
        limits.max_bytes, " bytes; limit max_bytes"));
  }
  std::istringstream in{std::string(yaml)};
  LimitCounter counter(limits);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(counter)) {
    }
  } catch (const LimitHit& hit) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", hit.mark.line + 1, ":",
                     hit.mark.column + 1, ": ", hit.message));
  } catch (const YAML::DeepRecursion& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.line + 1, ":", e.mark.column + 1,
                     ": nesting deeper than ", limits.max_depth,
                     " levels; limit max_depth"));
  } catch (const YAML::Exception&) {
    // A syntax error: the real parse reports it with its position.
  }
  return absl::OkStatus();
}

}  // namespace fleetcanary
