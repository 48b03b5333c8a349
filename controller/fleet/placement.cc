#include "controller/fleet/placement.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace controller {
namespace {

// Stable 64-bit hash (FNV-1a, then the splitmix64 finalizer): the same in
// every process, so placements and offsets survive controller restarts.
uint64_t StableHash(absl::string_view a, absl::string_view b) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](absl::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(a);
  h ^= 0xff;
  h *= 1099511628211ull;
  mix(b);
  h += 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

// One placement unit: both modes of one size of one schedule in one region.
struct Pair {
  std::string key;  // schedule|region|size, the rendezvous key.
  const v1::Schedule* schedule;
  const v1::RegionEndpoints* endpoints;
  uint64_t size;
  const v1::Target* target;
};

bool HasPair(const v1::AssignmentSet& set, const Pair& p) {
  for (const auto& a : set.assignments()) {
    if (a.schedule_id() == p.schedule->id() &&
        a.region() == p.endpoints->region() && a.size_bytes() == p.size) {
      return true;
    }
  }
  return false;
}

// Appends both modes' assignments of pair `p`, shared by `k` agents.
void AddPair(const Pair& p, size_t k, uint64_t score,
             absl::Duration rotation_period, v1::AssignmentSet* set) {
  const v1::Schedule& s = *p.schedule;
  // Size rotation: each size probes during one period in sizes_size(), at
  // that many times the rate, so its average rate is unchanged.
  const int slots = s.size_rotation() ? s.sizes_size() : 1;
  int slot = 0;
  while (slot < s.sizes_size() && s.sizes(slot) != p.size) ++slot;
  const absl::Duration interval =
      absl::Seconds(static_cast<double>(k) / (s.rate_per_second() * slots));
  const int64_t interval_ns =
      std::max<int64_t>(1, absl::ToInt64Nanoseconds(interval));
  const absl::Duration offset =
      absl::Nanoseconds(static_cast<int64_t>(score % interval_ns));
  std::vector<v1::InvokeMode> modes;
  for (int m : s.modes()) modes.push_back(static_cast<v1::InvokeMode>(m));
  if (modes.empty()) modes = {v1::BUFFERED, v1::RESPONSE_STREAM};
  for (v1::InvokeMode mode : modes) {
    const v1::FunctionUrl* url = nullptr;
    for (const v1::FunctionUrl& u : p.endpoints->urls()) {
      if (u.mode() == mode) url = &u;
    }
    if (url == nullptr) continue;
    v1::Assignment* a = set->add_assignments();
    a->set_schedule_id(s.id());
    a->set_target(s.target());
    a->set_region(p.endpoints->region());
    a->set_mode(mode);
    a->set_size_bytes(p.size);
    *a->mutable_url() = *url;
    a->set_role_arn(p.target->role_arn());
    *a->mutable_interval() = DurationToProto(interval);
    // Streaming runs half an interval after buffered: interleaved controls.
    const absl::Duration mode_offset =
        mode == v1::RESPONSE_STREAM
            ? absl::Nanoseconds(
                  (absl::ToInt64Nanoseconds(offset) + interval_ns / 2) %
                  interval_ns)
            : offset;
    *a->mutable_offset() = DurationToProto(mode_offset);
    a->set_chunk_bytes(s.chunk_bytes());
    if (s.has_chunk_gap()) *a->mutable_chunk_gap() = s.chunk_gap();
    if (s.has_limits()) *a->mutable_limits() = s.limits();
    if (s.has_transport()) *a->mutable_transport() = s.transport();
    if (slots > 1) {
      a->set_rotation_slot(slot);
      a->set_rotation_slots(slots);
      *a->mutable_rotation_period() = DurationToProto(rotation_period);
    }
  }
}

// Every pair of the schedules, by region.
std::map<std::string, std::vector<Pair>> PairsByRegion(
    const std::map<std::string, v1::Target>& targets,
    const std::map<std::string, v1::Schedule>& schedules) {
  std::map<std::string, std::vector<Pair>> pairs;
  for (const auto& [id, s] : schedules) {
    auto t = targets.find(s.target());
    if (t == targets.end()) continue;
    for (const v1::RegionEndpoints& re : t->second.regions()) {
      if (!ScheduleCoversRegion(s, re.region())) continue;
      for (uint64_t size : s.sizes()) {
        pairs[re.region()].push_back(
            {absl::StrCat(s.id(), "|", re.region(), "|", size), &s, &re, size,
             &t->second});
      }
    }
  }
  return pairs;
}

// How many of `agents` agents pair `p` runs on.
size_t AgentsPerPair(const Pair& p, size_t agents) {
  return std::min<size_t>(
      std::max<uint32_t>(1, p.schedule->agents_per_region()), agents);
}

// Places one region's pairs (sorted by key here) on its live `agents`.
void PlaceRegion(std::vector<Pair>& region_pairs,
                 const std::vector<std::string>& agents, double load_factor,
                 absl::Duration rotation_period,
                 std::map<std::string, v1::AssignmentSet>* sets) {
  std::sort(region_pairs.begin(), region_pairs.end(),
            [](const Pair& a, const Pair& b) { return a.key < b.key; });
  size_t slots = 0;
  for (const Pair& p : region_pairs) slots += AgentsPerPair(p, agents.size());
  const size_t capacity = static_cast<size_t>(
      std::ceil(load_factor * static_cast<double>(slots) / agents.size()));
  std::map<std::string, size_t> load;
  for (const Pair& p : region_pairs) {
    const size_t k = AgentsPerPair(p, agents.size());
    std::vector<std::pair<uint64_t, const std::string*>> ranked;
    for (const std::string& id : agents) {
      ranked.push_back({StableHash(p.key, id), &id});
    }
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    size_t placed = 0;
    // First pass honours the load bound; a second one (only reachable
    // through rounding) ignores it so every pair is placed.
    for (int pass = 0; pass < 2 && placed < k; ++pass) {
      for (const auto& [score, id] : ranked) {
        if (placed == k) break;
        if (pass == 0 && load[*id] >= capacity) continue;
        if (pass == 1 && HasPair((*sets)[*id], p)) continue;
        ++load[*id];
        ++placed;
        AddPair(p, k, score, rotation_period, &(*sets)[*id]);
      }
    }
  }
}

}  // namespace

bool ScheduleCoversRegion(const v1::Schedule& s, const std::string& region) {
  return s.regions().empty() ||
         std::find(s.regions().begin(), s.regions().end(), region) !=
             s.regions().end();
}

std::map<std::string, v1::AssignmentSet> PlaceAssignments(
    const std::map<std::string, v1::Target>& targets,
    const std::map<std::string, v1::Schedule>& schedules,
    const std::map<std::string, std::vector<std::string>>& live_by_region,
    double load_factor, absl::Duration rotation_period) {
  std::map<std::string, std::vector<Pair>> pairs =
      PairsByRegion(targets, schedules);
  std::map<std::string, v1::AssignmentSet> sets;
  for (auto& [region, region_pairs] : pairs) {
    auto live = live_by_region.find(region);
    if (live == live_by_region.end() || live->second.empty()) continue;
    PlaceRegion(region_pairs, live->second, load_factor, rotation_period,
                &sets);
  }
  return sets;
}

}  // namespace controller
}  // namespace fleetcanary
