// Ctrl-C for a long-running command: while a SigintFlag is alive, SIGINT
// only raises a flag the command polls (to stop and still print what it has)
// instead of killing the process.
//
// Example:
//   SigintFlag sigint;
//   while (!done && !sigint.raised()) { ... }
//
// Thread-safety: raised() and Take() may be called from any thread; create
// and destroy it on one thread, one at a time per process (the handler and
// its flag are process-wide).
#ifndef FLEETCANARY_CLI_UI_SIGINT_FLAG_H_
#define FLEETCANARY_CLI_UI_SIGINT_FLAG_H_

#include <signal.h>

namespace fleetcanary {
namespace cli {

class SigintFlag {
 public:
  // Installs the handler, with the flag lowered.
  SigintFlag();
  // Restores the SIGINT disposition that was in place before.
  ~SigintFlag();

  SigintFlag(const SigintFlag&) = delete;
  SigintFlag& operator=(const SigintFlag&) = delete;

  // Whether Ctrl-C was pressed since construction or the last Take().
  bool raised() const;
  // raised(), lowering the flag.
  bool Take();

 private:
  struct sigaction previous_ = {};
};

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_UI_SIGINT_FLAG_H_
