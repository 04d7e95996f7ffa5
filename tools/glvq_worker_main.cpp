// glvq-worker: the one binary every rank runs (mpirun, srun, or alone).
#include "common/error.h"
#include "jobs/stage.h"
#include "jobs/worker.h"

#include <CLI/CLI.hpp>
#include <fmt/ranges.h>

#include <cstdlib>

int main(int argc, char** argv) {
  // Ranks read the same checkpoint concurrently; HDF5's advisory locks would
  // make those opens fail on some filesystems, and no rank writes a file another opens.
  setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
  glvq::Comm& comm = glvq::Comm::init(&argc, &argv);
  glvq::WorkerArgs args;
  CLI::App app{fmt::format(
      "glvq-worker {}: quantize a Llama-family model with grouped lattice vector quantization.\n"
      "Run it alone, under mpirun -np N, or srun; ranks share the model's blocks.\n"
      "Writes <output_dir>/report.json (and plan.json, logs/rank-<r>.log).\n"
      "Exit codes: 0 ok, 1 runtime error, 2 bad command line or config, 3 preempted (resume with --resume), "
      "4 another rank failed.", GLVQ_GIT_COMMIT)};
  app.add_option("--config", args.config_file, "experiment YAML file (see docs/CONFIG.md)")->required();
  app.add_option("--set", args.overrides, "override a config key, e.g. --set quant.bits=3 (repeatable)");
  app.add_option("--stage", args.stage,
                 fmt::format("run one stage: all, {} (default all)", fmt::join(glvq::stage_names(), ", ")));
  app.add_flag("--resume", args.resume, "reuse finished blocks and saved statistics in output_dir");
  int code = 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank sees the same command line; rank 0 speaks for all.
    if (comm.is_root()) app.exit(e);
    code = e.get_exit_code() == 0 ? 0 : glvq::kExitUsage;
    comm.finalize();
    return code;
  }
  code = glvq::run_worker(comm, args);
  comm.finalize();
  return code;
}
