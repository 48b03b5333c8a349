// The findings of an incident report and the period boundaries they give
// (report_build_steps.h).
#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "analysis/report/report_build_steps.h"
#include "common/proto/time_convert.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary::report::internal {
namespace {

using google::protobuf::util::TimeUtil;

// How far an episode got, for a finding's worst state: a confirmed fix
// outranks a mere SUSPECT here, unlike the live verdict service's
// LivePublishUrgency, which ranks how urgently a state must be shown.
int FindingProgressRank(v1::VerdictState s) {
  switch (s) {
    case v1::REGRESSION:
      return 4;
    case v1::RECOVERING:
      return 3;
    case v1::FIX_CONFIRMED:
      return 2;
    case v1::SUSPECT:
      return 1;
    default:
      return 0;
  }
}

// Whether a verdict time is a real instant (an unset or overflowed estimate
// is not): after 1970 and inside the Timestamp range.
bool IsRealTime(const google::protobuf::Timestamp& t) {
  return t.seconds() > 0 && t.seconds() <= TimeUtil::kTimestampMaxSeconds;
}
bool IsRealInterval(const v1::TimeInterval& i) {
  return IsRealTime(i.lower()) && IsRealTime(i.upper());
}

// The fix certificate of a FIX_CONFIRMED transition.
void FillFix(const v1::Verdict& t, double fix_alpha, v1::FixCertificate* c) {
  const v1::Evidence& e = t.evidence();
  if (IsRealTime(e.change_time())) {
    *c->mutable_change_time() = e.change_time();
  }
  if (IsRealInterval(e.change_interval())) {
    *c->mutable_change_interval() = e.change_interval();
  }
  if (e.has_confirmation_start()) {
    *c->mutable_confirmation_start() = e.confirmation_start();
  }
  c->set_probes(e.trials());
  c->set_failures(e.failures());
  c->set_confidence(1 - fix_alpha);
  c->set_likelihood_ratio(e.likelihood_ratio());
  c->set_proven_upper_bound(e.proven_upper_bound());
  *c->mutable_confirmed_at() = t.since();
}

// Folds one non-HEALTHY transition into its finding.
void Apply(const v1::Verdict& t, double fix_alpha, v1::ReportFinding* f) {
  if (FindingProgressRank(t.state()) > FindingProgressRank(f->worst_state()) &&
      !(t.state() != v1::REGRESSION && f->worst_state() == v1::REGRESSION)) {
    f->set_worst_state(t.state());
  }
  if (t.state() == v1::REGRESSION) {
    // The first REGRESSION of the episode carries the onset estimate.
    if (!f->has_change_time()) {
      *f->mutable_evidence() = t.evidence();
      if (IsRealTime(t.evidence().change_time())) {
        *f->mutable_change_time() = t.evidence().change_time();
      } else {
        *f->mutable_change_time() = t.since();
      }
      if (IsRealInterval(t.evidence().change_interval())) {
        *f->mutable_change_interval() = t.evidence().change_interval();
      }
    }
  } else if (t.state() == v1::SUSPECT && f->worst_state() == v1::SUSPECT) {
    *f->mutable_evidence() = t.evidence();
  } else if (t.state() == v1::FIX_CONFIRMED) {
    FillFix(t, fix_alpha, f->mutable_fix());
  }
}

// The findings (verdict keys that left HEALTHY) of the filtered transitions.
std::vector<v1::ReportFinding> Findings(const v1::AnalysisReport& analysis,
                                        double fix_alpha) {
  std::map<Identity, v1::VerdictState> current;
  for (const v1::Verdict& v : analysis.verdicts()) {
    current[IdentityOf(v)] = v.state();
  }
  std::map<Identity, v1::ReportFinding> by_id;
  std::vector<Identity> order;
  for (const v1::Verdict& t : analysis.transitions()) {
    if (t.state() == v1::HEALTHY) continue;
    const Identity id = IdentityOf(t);
    auto [it, inserted] = by_id.try_emplace(id);
    v1::ReportFinding& f = it->second;
    if (inserted) {
      order.push_back(id);
      f.set_kind(t.kind());
      *f.mutable_key() = t.key();
      *f.mutable_first_seen() = t.since();
    }
    Apply(t, fix_alpha, &f);
  }
  std::vector<v1::ReportFinding> out;
  for (const Identity& id : order) {
    v1::ReportFinding& f = by_id[id];
    auto cur = current.find(id);
    f.set_current_state(cur != current.end() ? cur->second : v1::HEALTHY);
    if (f.has_fix() && f.worst_state() == v1::REGRESSION) {
      f.mutable_fix()->set_baseline_rate(f.evidence().null_rate());
    }
    out.push_back(std::move(f));
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return TimeFromProto(a.first_seen()) < TimeFromProto(b.first_seen());
  });
  return out;
}

}  // namespace

Identity IdentityOf(const v1::Verdict& v) {
  return {v.kind(), v.key().region(), v.key().target(), v.key().mode(),
          v.key().size_class()};
}

Boundaries AddFindings(double fix_alpha, v1::IncidentReport* r) {
  Boundaries b;
  bool all_fixed = true, any_regression = false;
  absl::Time fix = absl::InfinitePast();
  for (v1::ReportFinding& f : Findings(r->analysis(), fix_alpha)) {
    if (f.worst_state() == v1::REGRESSION) {
      any_regression = true;
      const absl::Time onset = TimeFromProto(f.change_time());
      if (onset < b.onset) {
        b.onset = onset;
        *r->mutable_onset() = f.change_time();
        if (f.has_change_interval()) {
          *r->mutable_onset_interval() = f.change_interval();
        } else {
          r->clear_onset_interval();
        }
      }
      if (f.has_fix()) {
        const absl::Time t = f.fix().has_change_time()
                                 ? TimeFromProto(f.fix().change_time())
                                 : TimeFromProto(f.fix().confirmed_at());
        if (t > fix) {
          fix = t;
          *r->mutable_fix_time() = TimeToProto(t);
          if (f.fix().has_change_interval()) {
            *r->mutable_fix_interval() = f.fix().change_interval();
          }
        }
      } else {
        all_fixed = false;
      }
    }
    *r->add_findings() = std::move(f);
  }
  if (any_regression && all_fixed && fix > b.onset) {
    b.fix = fix;
  } else {
    r->clear_fix_time();
    r->clear_fix_interval();
  }
  return b;
}

}  // namespace fleetcanary::report::internal
