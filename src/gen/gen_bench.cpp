#include "gen/gen_bench.h"

#include "common/error.h"

#include <chrono>
#include <cmath>

namespace glvq {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void mean_sd(BenchRow& r) {
  double s = 0, ss = 0;
  for (double v : r.tps) s += v;
  r.mean = s / double(r.tps.size());
  for (double v : r.tps) ss += (v - r.mean) * (v - r.mean);
  r.stddev = r.tps.size() > 1 ? std::sqrt(ss / double(r.tps.size() - 1)) : 0;
}

at::Tensor random_tokens(int64_t b, int64_t n, int64_t vocab, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(0, vocab, {b, n}, at::TensorOptions().dtype(at::kLong));
}

/// One pp or tg test, repeated; the first run of each test is a warm-up (not counted).
void run_tests(Decoder& dec, const BenchOptions& opt, const BenchRow& proto, std::vector<BenchRow>& rows,
               const std::function<void(const std::string&)>& log) {
  const int64_t V = dec.weights().cfg.vocab;
  if (opt.pp > 0) {
    BenchRow r = proto;
    r.test = fmt::format("pp{}", opt.pp);
    r.tokens = opt.pp;
    const at::Tensor toks = random_tokens(1, opt.pp, V, opt.seed);
    for (int rep = -1; rep < opt.repeats; ++rep) {
      dec.reset(1, opt.pp);
      dec.synchronize();
      const double t0 = now_s();
      dec.forward(toks);
      dec.synchronize();
      if (rep >= 0) r.tps.push_back(opt.pp / (now_s() - t0));
    }
    mean_sd(r);
    if (log) log(fmt::format("{} {} {}: {:.1f} t/s", r.model, r.path, r.test, r.mean));
    rows.push_back(r);
  }
  for (int b : (opt.tg > 0 ? opt.batches : std::vector<int>{})) {
    BenchRow r = proto;
    r.test = b == 1 ? fmt::format("tg{}", opt.tg) : fmt::format("tg{} b{}", opt.tg, b);
    r.batch = b;
    r.tokens = opt.tg;
    const at::Tensor toks = random_tokens(b, opt.tg, V, opt.seed + uint64_t(b));
    std::vector<at::Tensor> steps;
    for (int i = 0; i < opt.tg; ++i) steps.push_back(toks.narrow(1, i, 1).contiguous());
    for (int rep = -1; rep < opt.repeats; ++rep) {
      dec.reset(b, opt.tg);
      dec.synchronize();
      const double t0 = now_s();
      for (int i = 0; i < opt.tg; ++i) dec.forward(steps[i]);
      dec.synchronize();
      if (rep >= 0) r.tps.push_back(double(b) * opt.tg / (now_s() - t0));
    }
    mean_sd(r);
    // A graph-replayed step attends to the whole cache (masked); an eager one to the filled part
    // (opt.tg / 2 positions on average).
    const bool whole = opt.device == "cuda" && opt.graph;
    r.step_bytes = double(dec.weights().step_weight_bytes()) +
                   double(dec.cache().read_bytes(dec.weights(), whole ? opt.tg : opt.tg / 2));
    r.gbps = r.step_bytes * (r.mean / b) / 1e9;
    r.bound_tps = b * r.copy_gbps * 1e9 / r.step_bytes;
    if (log) log(fmt::format("{} {} {}: {:.1f} t/s", r.model, r.path, r.test, r.mean));
    rows.push_back(r);
  }
}

}  // namespace

double measure_copy_gbps(const std::string& device) {
  const at::Device dev = device == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const int64_t bytes = device == "cuda" ? (int64_t(1) << 30) : (int64_t(1) << 28);
  const at::Tensor a = at::ones({bytes}, at::TensorOptions().dtype(at::kByte).device(dev));
  at::Tensor b = at::empty_like(a);
  b.copy_(a);
  (void)b.sum().item<int64_t>();  // waits for the device
  const int reps = 10;
  const double t0 = now_s();
  for (int i = 0; i < reps; ++i) b.copy_(a);
  (void)b.narrow(0, 0, 1).sum().item<int64_t>();
  const double t = now_s() - t0;
  return 2.0 * double(bytes) * reps / t / 1e9;
}

std::vector<BenchRow> run_bench(const GenModel& model, const BenchOptions& opt,
                                const std::function<void(const std::string&)>& log) {
  GLVQ_USAGE_CHECK(opt.repeats >= 1, "-r {} must be at least 1", opt.repeats);
  for (int b : opt.batches) GLVQ_USAGE_CHECK(b >= 1 && b <= 16, "batch {} must be 1..16", b);
  const int64_t ctx = model.config().max_positions;
  GLVQ_USAGE_CHECK(opt.pp <= ctx && opt.tg <= ctx, "-p {} / -n {} exceed the model's context of {}", opt.pp, opt.tg,
                   ctx);
  std::vector<BenchRow> rows;
  BenchRow proto;
  proto.model = opt.name;
  proto.params = model.params();
  proto.copy_gbps = measure_copy_gbps(opt.device);
  if (log) log(fmt::format("device copy: {:.0f} GB/s (read + write)", proto.copy_gbps));
  {
    DecoderOptions d;
    d.device = opt.device;
    d.cuda_graph = opt.graph;
    Decoder dec(model, d);
    BenchRow r = proto;
    r.device = dec.device_name();
    r.path = model.method();
    r.size_gib = double(model.file_bytes()) / double(1ull << 30);
    r.bits_per_weight = model.bits_per_weight();
    r.linears = dec.linear_kinds();
    run_tests(dec, opt, r, rows, log);
  }
  if (opt.baseline && opt.device == "cuda") {
    BenchRow r = proto;
    r.path = "fp16";
    r.size_gib = 2.0 * double(model.params()) / double(1ull << 30);
    r.bits_per_weight = 16;
    const int64_t need = 2 * model.params(), free = gen_free_device_bytes(opt.device);
    if (free >= 0 && double(need) > 0.9 * double(free)) {
      r.device = rows.empty() ? opt.device : rows.front().device;
      r.test = "-";
      r.note = fmt::format("fp16 weights ({:.1f} GiB) do not fit the free device memory ({:.1f} GiB)",
                           need / double(1ull << 30), free / double(1ull << 30));
      if (log) log(r.note);
      rows.push_back(r);
    } else {
      DecoderOptions d;
      d.device = opt.device;
      d.cuda_graph = opt.graph;
      d.dense = true;
      Decoder dec(model, d);
      r.device = dec.device_name();
      r.linears = dec.linear_kinds();
      run_tests(dec, opt, r, rows, log);
    }
  }
  return rows;
}

std::string params_text(int64_t n) {
  return n >= 1000000000 ? fmt::format("{:.2f} B", n / 1e9) : fmt::format("{:.2f} M", n / 1e6);
}

std::string bench_markdown(const std::vector<BenchRow>& rows) {
  std::string s =
      "| model | size GiB | bits/weight | params | device | weights | test | t/s | GB/s | % of copy bound |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const BenchRow& r : rows) {
    if (!r.note.empty()) {
      s += fmt::format("| {} | {:.2f} | {:.2f} | {} | {} | {} | - | {} | | |\n", r.model, r.size_gib,
                       r.bits_per_weight, params_text(r.params), r.device, r.path, r.note);
      continue;
    }
    const bool tg = r.step_bytes > 0;
    s += fmt::format("| {} | {:.2f} | {:.2f} | {} | {} | {} | {} | {:.2f} ± {:.2f} | {} | {} |\n", r.model,
                     r.size_gib, r.bits_per_weight, params_text(r.params), r.device, r.path, r.test, r.mean, r.stddev,
                     tg ? fmt::format("{:.0f}", r.gbps) : "", tg ? fmt::format("{:.0f}%", 100 * r.mean / r.bound_tps) : "");
  }
  if (!rows.empty()) s += fmt::format("\ndevice copy (read + write): {:.0f} GB/s\n", rows.front().copy_gbps);
  return s;
}

nlohmann::json bench_json(const std::vector<BenchRow>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const BenchRow& r : rows)
    a.push_back({{"model", r.model}, {"device", r.device}, {"weights", r.path}, {"test", r.test},
                 {"size_gib", r.size_gib}, {"bits_per_weight", r.bits_per_weight}, {"params", r.params},
                 {"batch", r.batch}, {"tokens", r.tokens}, {"samples_ts", r.tps}, {"avg_ts", r.mean},
                 {"stddev_ts", r.stddev}, {"step_bytes", r.step_bytes}, {"gbps", r.gbps},
                 {"copy_gbps", r.copy_gbps}, {"bound_ts", r.bound_tps}, {"linears", r.linears}, {"note", r.note}});
  return a;
}

}  // namespace glvq
