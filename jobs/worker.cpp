#include "jobs/worker.h"

#include "ckpt/run_report.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/preempt.h"
#include "dist/transfer_watchdog.h"
#include "jobs/stage.h"
#include "nn/gpu_memory.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace glvq {
namespace {

at::Device pick_device(const Config& cfg, const Comm& comm) {
  const size_t gpus = at::hasCUDA() ? at::getNumGPUs() : 0;
  if (cfg.device == "cpu" || (cfg.device == "auto" && gpus == 0)) return at::kCPU;
  GLVQ_USAGE_CHECK(gpus > 0, "device: cuda was asked for but this rank sees no CUDA GPU (built without CUDA, "
                   "or CUDA_VISIBLE_DEVICES is empty); use device: cpu or auto");
  return at::Device(at::kCUDA, static_cast<at::DeviceIndex>(comm.local_rank() % gpus));
}

void setup(JobContext& ctx, const WorkerArgs& args) {
  if (args.stage != "all") make_stage(args.stage);  // an unknown stage fails before any work
  ctx.cfg = load_config(args.config_file, args.overrides);
  ctx.resume = args.resume;
  require_writable_dir(ctx.cfg.output_dir, "output_dir");
  log_init(ctx.cfg.output_dir, ctx.comm->rank(), ctx.comm->size());
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = ctx.cfg.threads > 0 ? ctx.cfg.threads : std::max(1, hw / ctx.comm->local_size());
  at::set_num_threads(threads);
  ctx.device = pick_device(ctx.cfg, *ctx.comm);
  const std::string transport = ctx.comm->select_transport(ctx.cfg.transport, ctx.device);
  ctx.rank_report["transport"] = transport.substr(0, transport.find(' '));
  set_transfer_timeout(ctx.cfg.comm_timeout_s);
  set_preemption_grace(ctx.cfg.preempt_grace_s);
  ctx.model = load_llama_config(ctx.cfg.model.path);
  ctx.files = std::make_unique<ModelFiles>(ctx.cfg.model.path);
  ctx.rope = make_rope(ctx.model, std::max(ctx.cfg.calib.ctx, ctx.cfg.eval.ctx), ctx.device);
  log_info("glvq-worker {}: rank {}/{} on {} with {} threads; model {} ({} blocks, hidden {}); activations by {}",
           GLVQ_GIT_COMMIT, ctx.comm->rank(), ctx.comm->size(), ctx.device.str(), threads, ctx.cfg.model.path,
           ctx.model.n_layers, ctx.model.hidden, transport);
}

void write_report(JobContext& ctx, double wall_s) {
  nlohmann::json mine = ctx.rank_report;
  mine["rank"] = ctx.comm->rank();
  mine["device"] = ctx.device.str();
  mine["peak_rss_bytes"] = peak_rss_bytes();
  mine["comm_wait_s"] = ctx.comm->wait_seconds();
  mine["comm_bytes_sent"] = ctx.comm->bytes_sent();
  mine["comm_send_s"] = ctx.comm->send_seconds();
  mine["comm_sends"] = ctx.comm->sends();
  if (ctx.device.is_cuda()) {
    gpu_memory_sample();
    mine["gpu_memory_used_peak_bytes"] = gpu_memory_peak_bytes();
  }
  mine["tensors_read"] = ctx.files->tensors_read().size();
  mine["bytes_read"] = ctx.files->bytes_read();
  auto all = ctx.comm->gather_strings(mine.dump());
  if (!ctx.first_rank()) return;
  nlohmann::json& r = ctx.report;
  r["model"] = ctx.cfg.model.path;
  r["method"] = ctx.cfg.quant.method;
  if (ctx.cfg.quant.method == "none") {
    r["bits_per_weight"] = 16.0;
    r["code_bits_per_weight"] = 16.0;
    r["bits_per_weight_model"] = 16.0;
  }
  for (const char* k : {"ppl_fp", "ppl_quant", "eval_ctx", "eval_chunks", "eval_tokens", "bits_per_weight"})
    if (!r.contains(k)) r[k] = nullptr;
  r["ranks"] = ctx.comm->size();
  r["timings_s"] = ctx.timings;
  r["timings_s"]["total"] = wall_s;
  r["git_commit"] = GLVQ_GIT_COMMIT;
  r["config"] = config_to_json(ctx.cfg);
  r["per_rank"] = nlohmann::json::array();
  for (auto& s : all) r["per_rank"].push_back(nlohmann::json::parse(s));
  write_file_atomic(ctx.cfg.output_dir + "/report.json", r.dump(2) + "\n");
  log_info("report: {}/report.json", ctx.cfg.output_dir);
  // report.html is a view of report.json and the checkpoint, both complete by now: failing to write
  // it must not fail the finished job, but it must not pass unnoticed either.
  try {
    write_run_report_html(ctx.cfg.output_dir, r);
    log_info("report: {}/report.html", ctx.cfg.output_dir);
  } catch (const std::exception& e) {
    log_warn("report.html was not written ({}); the job's results are complete. Write it later with: glvq-inspect "
             "{}/model.glvq.h5 --html {}/report.html",
             e.what(), ctx.cfg.output_dir, ctx.cfg.output_dir);
  }
}

}  // namespace

int run_worker(Comm& comm, const WorkerArgs& args) {
  install_preemption_handlers();
  set_preemption_grace(Config{}.preempt_grace_s);  // the watcher runs from the start; setup applies the config's
  JobContext ctx;
  ctx.comm = &comm;
  // Setup fails the same way on every rank (same files, same config), so
  // every rank can return normally; rank 0 alone prints. A preemption is one
  // rank's: it may find the others inside a collective, so it ends them all.
  try {
    setup(ctx, args);
  } catch (const Error& e) {
    const bool preempted = e.exit_code() == kExitPreempted;
    if (comm.is_root() || preempted) std::fprintf(stderr, "glvq-worker: error: %s\n", e.what());
    if (preempted && comm.size() > 1) comm.abort_job(e.exit_code());
    return e.exit_code();
  }
  std::vector<std::string> stages = args.stage == "all" ? stage_names() : std::vector<std::string>{args.stage};
  auto t_start = std::chrono::steady_clock::now();
  std::string current;  // the stage running, for the preemption message
  try {
    for (const auto& name : stages) {
      current = name;
      auto stage = make_stage(name);
      if (name != "plan" && !ctx.have_plan) make_stage("plan")->run(ctx);
      auto t0 = std::chrono::steady_clock::now();
      const double wait0 = comm.wait_seconds(), send0 = comm.send_seconds(), bytes0 = comm.bytes_sent();
      stage->run(ctx);
      ctx.timings[name] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // Per stage: time blocked in the pipeline (bubbles + transfers), of it in sends, and bytes sent.
      ctx.rank_report["comm_by_stage"][name] = {{"wait_s", comm.wait_seconds() - wait0},
                                                {"send_s", comm.send_seconds() - send0},
                                                {"bytes_sent", comm.bytes_sent() - bytes0}};
      log_info("stage {} finished in {:.1f}s", name, ctx.timings[name]);
    }
    current = "the report";
    write_report(ctx, std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  } catch (const Preempted& e) {
    // The stage's unfinished block is abandoned: nothing of it was renamed into place.
    const PreemptionGap gap = preemption_longest_gap(false);
    log_error("stage {}: {}: work finished so far is saved; run again with --resume (Slurm: the batch script "
              "requeues the job). Longest stretch between two preemption checks in this run: {:.3f}s, from {} to {}",
              current, e.what(), gap.seconds, gap.from, gap.to);
    log_close();
    if (comm.size() > 1) comm.abort_job(e.exit_code());
    return e.exit_code();
  } catch (const Error& e) {
    log_error("{}", e.what());  // the log echoes errors to the terminal
    log_close();
    if (comm.size() > 1) comm.abort_job(e.exit_code());
    return e.exit_code();
  } catch (const std::exception& e) {
    log_error("unexpected error: {}", e.what());
    log_close();
    if (comm.size() > 1) comm.abort_job(kExitError);
    return kExitError;
  }
  log_close();
  return kExitOk;
}

}  // namespace glvq
