#include "cli/ui/sigint_flag.h"

#include <atomic>

namespace fleetcanary {
namespace cli {
namespace {

std::atomic<bool> g_raised{false};

void OnSigint(int) { g_raised = true; }

}  // namespace

SigintFlag::SigintFlag() {
  g_raised = false;
  struct sigaction sa = {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous_);
}

SigintFlag::~SigintFlag() { sigaction(SIGINT, &previous_, nullptr); }

bool SigintFlag::raised() const { return g_raised; }

bool SigintFlag::Take() { return g_raised.exchange(false); }

}  // namespace cli
}  // namespace fleetcanary
