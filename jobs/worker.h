#pragma once
/// glvq-worker's life on one rank: set up the context, run the requested
/// stages, write report.json. main() only parses the command line.
#include "jobs/job_context.h"

#include <string>
#include <vector>

namespace glvq {

struct WorkerArgs {
  std::string config_file;
  std::vector<std::string> overrides;
  std::string stage = "all";
  bool resume = false;
};

/// Returns the process exit code (see ExitCode in common/error.h).
int run_worker(Comm& comm, const WorkerArgs& args);

}  // namespace glvq
