#pragma once
/// The worker's stages (plan, calibrate, learn, gather, validate) behind one
/// interface; glvq-worker's main only dispatches them by name.
#include "jobs/job_context.h"

#include <memory>
#include <string>
#include <vector>

namespace glvq {

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string name() const = 0;
  /// Runs on every rank (collectively).
  virtual void run(JobContext& ctx) = 0;
};

/// Stage names in pipeline order.
const std::vector<std::string>& stage_names();
/// Throws a UsageError naming the valid stages when NAME is unknown.
std::unique_ptr<Stage> make_stage(const std::string& name);

std::unique_ptr<Stage> make_plan_stage();
std::unique_ptr<Stage> make_calibrate_stage();
std::unique_ptr<Stage> make_learn_stage();
std::unique_ptr<Stage> make_gather_stage();
std::unique_ptr<Stage> make_validate_stage();

}  // namespace glvq
