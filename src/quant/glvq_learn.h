#pragma once
/// GLVQ learning of the generation matrices G and companding parameters mu of
/// a batch of groups: alternate re-rounding (codes from the current G, mu, no
/// gradient) and one Adam step on G and mu with the codes fixed, on
///   sum_g tr(E_g A_g E_g^T) / loss0_g + lambda ||G_g - G0_g||_F^2 / ||G0_g||_F^2,
/// E_g = W_g - c^-1(G_g (z + 1/2)). Groups are independent (the objective is a
/// sum over groups and Adam is per coordinate), so every step is a few batched
/// tensor ops over all groups. Gradients are written out by hand (no autograd).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "quant/glvq_group_ops.h"

namespace glvq {

struct GlvqLearnOptions {
  int iters = 200;          ///< Adam steps at most
  double lr = 1e-3;         ///< on G / sigma_max(G0) and on logit((mu - 10) / 245)
  double lambda = 1e-4;     ///< penalty weight, relative (see above)
  double sigma_min = 1e-4;  ///< singular values of G kept in [sigma_min, sigma_max] * sigma_max(G0)
  double sigma_max = 1e4;
  double eps = 1e-5;  ///< stop when the best summed loss gained < eps (relative) over 20 steps
  bool companding = true;
  std::string rounding = "babai";
  bool cosine = true;  ///< decay lr to 0 over iters by a half cosine
};

struct GlvqLearnResult {
  GlvqParams best;              ///< per group, the iterate with the lowest loss
  at::Tensor best_loss;         ///< [B] its loss tr(E A E^T)
  at::Tensor init_loss;         ///< [B] loss at the start
  std::vector<double> history;  ///< summed loss at every evaluated iterate
};

/// Gradient of the objective above for one step, codes Z [B, M, d] fixed:
/// EA = E A ([B, out, gs]) with E = W - c^-1(G (Z + 1/2)) (vectors of d
/// consecutive columns, row by row), LOSS0 [B] the per-group normaliser,
/// G0 the penalty's centre, SCALE / MU [B] the companding parameters (MU
/// ignored when COMPANDING is off). Returns d/dG [B, d, d] and d/dmu [B]
/// (undefined without companding). Any float dtype (the tests use double).
struct GlvqLearnGrad {
  at::Tensor dG, dmu;
};
GlvqLearnGrad glvq_learn_gradient(const at::Tensor& EA, const at::Tensor& Z, const at::Tensor& G, const at::Tensor& mu,
                                  const at::Tensor& scale, const at::Tensor& loss0, const at::Tensor& G0, double lambda,
                                  bool companding);

/// Learns from INIT for the groups WG [B, out, gs] with metrics A [B, gs, gs];
/// F ([B, gs, gs] or undefined) is the in-group error feedback used when re-rounding.
GlvqLearnResult glvq_learn(const at::Tensor& Wg, const at::Tensor& A, const at::Tensor& F, const GlvqParams& init,
                           const GlvqLearnOptions& opt);

}  // namespace glvq
