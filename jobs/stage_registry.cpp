#include "common/error.h"
#include "jobs/stage.h"

#include <fmt/ranges.h>

namespace glvq {

const std::vector<std::string>& stage_names() {
  static const std::vector<std::string> names = {"plan", "calibrate", "learn", "gather", "validate"};
  return names;
}

std::unique_ptr<Stage> make_stage(const std::string& name) {
  if (name == "plan") return make_plan_stage();
  if (name == "calibrate") return make_calibrate_stage();
  if (name == "learn") return make_learn_stage();
  if (name == "gather") return make_gather_stage();
  if (name == "validate") return make_validate_stage();
  throw UsageError(fmt::format("--stage {}: unknown stage; expected all or one of {}", name,
                               fmt::join(stage_names(), ", ")),
                   __FILE__, __LINE__);
}

}  // namespace glvq
