#include "analysis/detectors/lifecycle.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "analysis/detectors/state_io.h"
#include "common/status/status_util.h"

namespace fleetcanary::analysis::detectors {

Lifecycle::Lifecycle(v1::VerdictKind kind, const Key& key) {
  verdict_.set_kind(kind);
  *verdict_.mutable_key() = ToStreamKey(key);
  verdict_.set_state(v1::HEALTHY);
  verdict_.set_previous_state(v1::VERDICT_STATE_UNSPECIFIED);
}

void Lifecycle::Move(v1::VerdictState to, absl::Time t, v1::Evidence ev,
                     std::vector<v1::Verdict>* out) {
  verdict_.set_previous_state(verdict_.state());
  verdict_.set_state(to);
  *verdict_.mutable_since() = ToProto(t);
  *verdict_.mutable_updated() = ToProto(t);
  *verdict_.mutable_evidence() = std::move(ev);
  out->push_back(verdict_);
}

void Lifecycle::Update(absl::Time t, v1::Evidence ev) {
  *verdict_.mutable_updated() = ToProto(t);
  *verdict_.mutable_evidence() = std::move(ev);
}

absl::StatusOr<Lifecycle> Lifecycle::Load(const v1::Verdict& in,
                                          v1::VerdictKind kind,
                                          absl::string_view where) {
  const std::string field = Field(where, "verdict");
  if (in.kind() != kind) {
    return Invalid(field, absl::StrCat("kind ", static_cast<int>(in.kind()),
                                       " in the list of kind ",
                                       v1::VerdictKind_Name(kind)));
  }
  FC_RETURN_IF_ERROR(CheckStateKey(in.key(), kind, field));
  if (in.state() < v1::HEALTHY || in.state() > v1::FIX_CONFIRMED) {
    return Invalid(field, absl::StrCat("state ", static_cast<int>(in.state()),
                                       " is not a verdict state"));
  }
  if (!v1::VerdictState_IsValid(in.previous_state())) {
    return Invalid(field, absl::StrCat("previous_state ",
                                       static_cast<int>(in.previous_state()),
                                       " is not a verdict state"));
  }
  Lifecycle life(kind, MakeKey(in.key()));
  life.verdict_ = in;
  return life;
}

}  // namespace fleetcanary::analysis::detectors
