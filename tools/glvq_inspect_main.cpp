// glvq-inspect: per-layer summary of a glvq checkpoint (model.glvq.h5) or block file.
#include "ckpt/inspect.h"
#include "common/error.h"
#include "tool_run.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  std::string file;
  bool as_json = false, no_cond = false;
  CLI::App app{fmt::format(
      "glvq-inspect {}: summarise a glvq checkpoint (model.glvq.h5) or a block file (blocks/block-<k>.h5).\n"
      "Per layer: shape, method, bits per weight (every stored array counted), loss, loss_init and the\n"
      "conditioning of the generation matrices G (sigma_max / sigma_min: max and median over groups).\n"
      "Every dataset's checksum is verified on the way.\n"
      "Exit codes: 0 ok, 1 unreadable/invalid file, 2 bad command line.",
      GLVQ_GIT_COMMIT)};
  app.add_option("FILE", file, "model.glvq.h5 or block-<k>.h5")->required();
  app.add_flag("--json", as_json, "print the summary as JSON (schema in docs/FORMAT.md)");
  app.add_flag("--no-cond", no_cond, "skip the G conditioning (one small SVD per group)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : glvq::kExitUsage;
  }
  return glvq::run_tool("glvq-inspect", file, [&]() {
    glvq::InspectOptions opt;
    opt.conditioning = !no_cond;
    const nlohmann::json s = glvq::inspect_file(file, opt);
    if (as_json) {
      std::cout << s.dump(2) << "\n";
    } else {
      std::cout << glvq::inspect_text(s);
    }
    return 0;
  });
}
