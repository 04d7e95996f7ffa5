// Preemption inside long loops (common/preempt.h): a recorded SIGTERM/SIGUSR1
// makes the next check throw Preempted (exit code 3); a wait that cannot poll
// and a rank that reaches no check within the grace are ended by the watcher
// with exit 3; the quantizers check at the granularity that bounds the latency
// (counted against the loop structure of the layer) and an abandoned layer
// leaves nothing behind: quantizing it again gives the uninterrupted result.
#include "common/preempt.h"
#include "quant/glvq.h"
#include "quant/gptq.h"
#include "quant/quantizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

namespace glvq {
namespace {

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// A Hessian of N correlated samples: X^T X / N with X mixed through a random matrix.
at::Tensor correlated_h(int64_t in, int64_t n) {
  const at::Tensor X = at::matmul(at::randn({n, in}), at::eye(in) + 0.3 * at::randn({in, in}) / std::sqrt(double(in)));
  return at::matmul(X.t(), X) / double(n);
}

bool same(const QuantizedLinear& a, const QuantizedLinear& b) {
  if (a.arrays.size() != b.arrays.size() || a.loss != b.loss) return false;
  for (const auto& [k, v] : a.arrays)
    if (!b.arrays.count(k) || !at::equal(v, b.arrays.at(k))) return false;
  return true;
}

// Runs BODY with the N-th check armed; returns the Preempted's WHERE, or "" when BODY finished.
template <typename Body>
std::string interrupted_at(int64_t n, Body body) {
  preempt_testing::arm_at_check(n);
  try {
    body();
  } catch (const Preempted& e) {
    preempt_testing::arm_at_check(0);
    EXPECT_EQ(e.exit_code(), kExitPreempted);
    EXPECT_EQ(e.signal(), SIGTERM);
    return e.where();
  }
  preempt_testing::arm_at_check(0);
  return "";
}

// Counts the checks of BODY and checks that interrupting it at the first, a middle and
// the last check throws there, and that a run after each interruption is the uninterrupted one.
template <typename Body>
int64_t checks_and_interruptions(Body body, const char* expect_where) {
  const int64_t c0 = preempt_testing::checks();
  const QuantizedLinear ref = body();
  const int64_t n = preempt_testing::checks() - c0;
  for (int64_t k : {int64_t(1), n / 2, n}) {
    if (k < 1) continue;
    const std::string where = interrupted_at(k, body);
    EXPECT_FALSE(where.empty()) << "check " << k << " of " << n << " did not interrupt";
    if (k == n / 2 && expect_where) {
      EXPECT_EQ(where, expect_where) << "check " << k << " of " << n;
    }
    EXPECT_TRUE(same(body(), ref)) << "the run after an interruption at check " << k << " differs";
  }
  return n;
}

TEST(Preempt, ARecordedSignalMakesTheNextCheckThrow) {
  install_preemption_handlers();
  preempt_testing::clear();
  EXPECT_NO_THROW(throw_if_preempted("a loop"));
  std::raise(SIGUSR1);
  EXPECT_EQ(preemption_signal(), SIGUSR1);
  try {
    throw_if_preempted("a loop");
    ADD_FAILURE() << "no Preempted after SIGUSR1";
  } catch (const Preempted& e) {
    EXPECT_EQ(e.exit_code(), kExitPreempted);
    EXPECT_EQ(e.signal(), SIGUSR1);
    EXPECT_EQ(e.message(), "preempted by SIGUSR1 in a loop");
  }
  EXPECT_THROW(throw_if_preempted("a loop"), Preempted);  // it stays recorded
  preempt_testing::clear();
  EXPECT_NO_THROW(throw_if_preempted("a loop"));
}

TEST(Preempt, ArmedCheckThrowsAtTheNthCheckOnly) {
  preempt_testing::clear();
  preempt_testing::arm_at_check(3);
  EXPECT_NO_THROW(throw_if_preempted("one"));
  EXPECT_NO_THROW(throw_if_preempted("two"));
  EXPECT_THROW(throw_if_preempted("three"), Preempted);
  EXPECT_NO_THROW(throw_if_preempted("four"));
  preempt_testing::arm_at_check(0);
}

TEST(Preempt, AWaitEnteredWithASignalPendingThrowsInsteadOfBlocking) {
  install_preemption_handlers();
  preempt_testing::clear();
  { PreemptibleWait w("nothing"); }
  std::raise(SIGTERM);
  EXPECT_THROW(PreemptibleWait("a barrier"), Preempted);
  preempt_testing::clear();
}

TEST(Preempt, TheLongestGapIsTheLongestStretchOfWorkNotOfWaiting) {
  preempt_testing::clear();
  throw_if_preempted("a");
  preemption_longest_gap(true);
  throw_if_preempted("a");
  sleep_s(0.2);  // work
  throw_if_preempted("b");
  {
    PreemptibleWait w("w");
    sleep_s(0.4);  // waiting: not a stretch the checks must bound
  }
  sleep_s(0.05);
  throw_if_preempted("c");
  const PreemptionGap g = preemption_longest_gap(true);
  EXPECT_GE(g.seconds, 0.2);
  EXPECT_LT(g.seconds, 0.4);
  EXPECT_STREQ(g.from, "a");
  EXPECT_STREQ(g.to, "b");
}

class PreemptWatcher : public ::testing::Test {
 protected:
  // The watcher thread lives in the forked child only; "threadsafe" re-executes the binary.
  void SetUp() override { ::testing::FLAGS_gtest_death_test_style = "threadsafe"; }
};

TEST_F(PreemptWatcher, ASignalDuringAWaitEndsTheProcessWithExit3) {
  EXPECT_EXIT(
      {
        install_preemption_handlers();
        set_preemption_grace(0);  // the grace is off: the wait alone must end it
        PreemptibleWait w("a micro-batch from the previous rank");
        std::raise(SIGTERM);
        sleep_s(30);  // the watcher must end this long before
        std::exit(0);
      },
      ::testing::ExitedWithCode(3), "preempted by SIGTERM while waiting for a micro-batch from the previous rank");
}

TEST_F(PreemptWatcher, NoCheckWithinTheGraceEndsTheProcessWithExit3) {
  EXPECT_EXIT(
      {
        install_preemption_handlers();
        set_preemption_grace(1);
        throw_if_preempted("the last loop");
        std::raise(SIGUSR1);
        sleep_s(30);  // work without a check
        std::exit(0);
      },
      ::testing::ExitedWithCode(3), "preempted by SIGUSR1 [0-9.]+s ago and no preemption check was reached since "
                                    "\\(preempt_grace_s: 1; the last check was in the last loop\\)");
}

TEST_F(PreemptWatcher, WithoutASignalNothingEnds) {
  EXPECT_EXIT(
      {
        install_preemption_handlers();
        set_preemption_grace(0.2);
        { PreemptibleWait w("a barrier"); sleep_s(0.5); }
        sleep_s(0.5);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// The quantizers at a small shape: W [out, in], H from correlated samples.
constexpr int64_t kOut = 32, kIn = 128;

TEST(PreemptQuantizers, ShapedGlvqChecksEveryVectorColumnAndAnAbandonedLayerChangesNothing) {
  preempt_testing::clear();
  at::manual_seed(11);
  const at::Tensor W = at::randn({kOut, kIn}), H = correlated_h(kIn, 4 * kIn);
  GlvqOptions o;
  o.bits = 2;
  o.cfg.code = "shaped";
  o.cfg.group_size = 64;
  o.cfg.lloyd_iters = 2;
  o.cfg.candidates = 2;
  const int64_t n = checks_and_interruptions([&]() { return glvq_quantize_layer(W, H, "l", o); }, nullptr);
  // Every encode of the layer passes each of the in/d vector columns: the init's (per factor and
  // width asked), the lloyd_iters + 1 rounds' and the stored one; the Lloyd updates check per group.
  const int64_t columns = kIn / o.cfg.dim, groups = kIn / o.cfg.group_size;
  EXPECT_GE(n, (o.cfg.lloyd_iters + 2) * columns + o.cfg.lloyd_iters * groups);
}

TEST(PreemptQuantizers, BoxGlvqChecksEveryStepAndFeedbackColumnAndAnAbandonedLayerChangesNothing) {
  preempt_testing::clear();
  at::manual_seed(12);
  const at::Tensor W = at::randn({kOut, kIn}), H = correlated_h(kIn, 4 * kIn);
  GlvqOptions o;
  o.bits = 2;
  o.cfg.code = "box";
  o.cfg.group_size = 64;
  o.cfg.iters = 4;
  o.cfg.eps = 0;  // no early stop: every pass takes iters + 1 steps
  const int64_t n = checks_and_interruptions([&]() { return glvq_quantize_layer(W, H, "l", o); }, nullptr);
  // Each of the passes' iters + 1 steps rounds with feedback vector column by vector column
  // (gs/d checks) after its own check; each of the passes + 1 encodes checks per group.
  const int64_t per_step = 1 + o.cfg.group_size / o.cfg.dim, groups = kIn / o.cfg.group_size;
  EXPECT_GE(n, o.passes * (o.cfg.iters + 1) * per_step + (o.passes + 1) * groups);
}

TEST(PreemptQuantizers, GptqChecksEveryBlockOfColumnsAndAnAbandonedLayerChangesNothing) {
  preempt_testing::clear();
  at::manual_seed(13);
  const int64_t in = 512;
  const at::Tensor W = at::randn({kOut, in}), H = correlated_h(in, 4 * in);
  GptqConfig cfg;
  const int64_t n = checks_and_interruptions([&]() { return gptq_quantize_weight(W, H, 3, 128, cfg, "l"); },
                                             "the GPTQ column loop");
  EXPECT_GE(n, in / 128);  // the lazy batches of 128 columns
}

}  // namespace
}  // namespace glvq
