// canaryctl entry point: process setup only; see cli/app.h.
#include <unistd.h>

#include <iostream>

#include "cli/app.h"

int main(int argc, char** argv) {
  fleetcanary::cli::CliContext ctx;
  ctx.out = &std::cout;
  ctx.err = &std::cerr;
  ctx.err_is_tty = isatty(STDERR_FILENO) == 1;
  ctx.clock = fleetcanary::Clock::Real();
  return fleetcanary::cli::RunCanaryctl(argc, argv, &ctx);
}
