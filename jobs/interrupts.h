#pragma once
/// The points where a stage may stop: after a calibration micro-batch, after
/// a block's file is written, before the checkpoint is renamed into place.
/// There a pending SIGTERM/SIGUSR1 stops the job (exit 3, everything written
/// so far is complete and reused by --resume), and the test-only fault hook
/// can strike.
///
/// Test-only fault hook: GLVQ_FAULT="stage=<name>,rank=<r>,at=<n>,action=<a>"
/// makes rank r, at the n-th boundary (from 1) of stage <name> (calibrate,
/// learn, gather, validate), kill itself (action=kill: SIGKILL), stop itself
/// (stop: SIGSTOP, a rank alive but stuck), send itself
/// SIGTERM or SIGUSR1 (term, usr1: the preemption path, deterministically),
/// throw (throw), or fill the file system of path=FILE by growing FILE until
/// ENOSPC and go on (fill: a disk that fills up mid-job). Unset in normal use;
/// a malformed value is a usage error.
#include <string>

namespace glvq {

/// Stage boundary number COUNT (1, 2, ...) of STAGE on RANK.
void stage_boundary(const std::string& stage, int rank, int count);

}  // namespace glvq
