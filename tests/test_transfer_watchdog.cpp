// The pipeline-transfer watchdog: a transfer waiting past comm_timeout_s ends
// the process with exit 4 and says what it waited for; shorter waits, waits
// with the limit off, and time spent outside a transfer end nothing.
#include "dist/transfer_watchdog.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace glvq {
namespace {

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

class TransferWatchdog : public ::testing::Test {
 protected:
  // The watchdog thread lives in the forked child only; "threadsafe" re-executes the binary.
  void SetUp() override { ::testing::FLAGS_gtest_death_test_style = "threadsafe"; }
};

TEST_F(TransferWatchdog, AWaitPastTheLimitEndsTheProcessWithExit4) {
  EXPECT_EXIT(
      {
        set_transfer_timeout(0.2);
        TransferWatch w("micro-batch 3 from rank 0");
        sleep_s(30);  // the watchdog must end this long before
        std::exit(0);
      },
      ::testing::ExitedWithCode(4), "waited [0-9]+s for micro-batch 3 from rank 0 \\(comm_timeout_s: 0\\)");
}

TEST_F(TransferWatchdog, ShortWaitsAndTimeOutsideTransfersEndNothing) {
  EXPECT_EXIT(
      {
        set_transfer_timeout(0.5);
        for (int i = 0; i < 5; ++i) {
          TransferWatch w("micro-batch from rank 0");
          sleep_s(0.05);
        }
        sleep_s(1.5);  // no transfer in progress: computing between transfers is not waiting
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(TransferWatchdog, ZeroTurnsItOff) {
  EXPECT_EXIT(
      {
        set_transfer_timeout(0.2);
        set_transfer_timeout(0);
        TransferWatch w("micro-batch 1 from rank 0");
        sleep_s(1.0);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace glvq
