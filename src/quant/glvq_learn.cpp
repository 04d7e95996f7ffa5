#include "quant/glvq_learn.h"

#include <cmath>
#include <vector>

#include "common/error.h"
#include "common/preempt.h"

namespace glvq {
namespace {

constexpr double kMuLo = 10.0, kMuSpan = 245.0;  // mu = 10 + 245 sigmoid(theta), in [10, 255]
constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kAdamEps = 1e-8;
constexpr double kPi = 3.14159265358979323846;
constexpr size_t kPatience = 20;

struct Adam {
  at::Tensor m, v;
  int64_t t = 0;
  void init(const at::Tensor& x) {
    m = at::zeros_like(x);
    v = at::zeros_like(x);
  }
  void step(at::Tensor& x, const at::Tensor& g, double lr) {
    ++t;
    m.mul_(kBeta1).add_(g, 1 - kBeta1);
    v.mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
    const double c1 = 1 - std::pow(kBeta1, static_cast<double>(t)), c2 = 1 - std::pow(kBeta2, static_cast<double>(t));
    x.sub_(lr * (m / c1) / ((v / c2).sqrt() + kAdamEps));
  }
};

}  // namespace

GlvqLearnGrad glvq_learn_gradient(const at::Tensor& EA, const at::Tensor& Z, const at::Tensor& G, const at::Tensor& mu,
                                  const at::Tensor& scale, const at::Tensor& loss0, const at::Tensor& G0, double lambda,
                                  bool companding) {
  const int64_t B = EA.size(0), d = G.size(1);
  // d objective / d W_hat = -2 E A / loss0, then through c^-1 and G (z + 1/2).
  const at::Tensor T = Z + 0.5;                    // [B, M, d]
  const at::Tensor Uh = glvq_lattice_point(Z, G);  // [B, M, d]
  const at::Tensor R = (EA * (-2.0 / loss0).reshape({B, 1, 1})).reshape({B, -1, d});
  const at::Tensor s = scale.reshape({B, 1, 1});
  GlvqLearnGrad g;
  at::Tensor gU;
  if (companding) {
    // w = sign(u) s ((1 + mu)^|u| - 1) / mu.
    const at::Tensor m = mu.reshape({B, 1, 1}), lm = at::log1p(m);
    const at::Tensor a = Uh.abs(), ex = at::exp(a * lm);
    gU = R * (s * lm / m) * ex;
    const at::Tensor dw_dmu = at::sign(Uh) * s * (a * ex / ((1 + m) * m) - (ex - 1) / (m * m));
    g.dmu = (R * dw_dmu).sum({1, 2});
  } else {
    gU = R * s;
  }
  g.dG = at::bmm(gU.transpose(1, 2), T);
  if (lambda > 0) g.dG = g.dG + (G - G0) * (2.0 * lambda) / G0.square().sum({1, 2}).clamp_min(1e-30).reshape({B, 1, 1});
  return g;
}

GlvqLearnResult glvq_learn(const at::Tensor& Wg, const at::Tensor& A, const at::Tensor& F, const GlvqParams& init,
                           const GlvqLearnOptions& opt) {
  const int64_t B = Wg.size(0);
  const at::Tensor G0 = init.G;
  // Work in units of each group's G0 so that one learning rate fits every layer.
  const at::Tensor sig0 = at::linalg_svdvals(G0).amax(1).clamp_min(1e-30).reshape({B, 1, 1});
  at::Tensor P = G0 / sig0;
  at::Tensor theta;
  Adam adam_p, adam_t;
  adam_p.init(P);
  if (opt.companding) {
    const at::Tensor x = ((init.mu - kMuLo) / kMuSpan).clamp(1e-4, 1 - 1e-4);
    theta = at::log(x / (1 - x));
    adam_t.init(theta);
  }

  GlvqLearnResult res;
  res.best = init.clone();
  res.best_loss = at::full({B}, INFINITY, Wg.options());
  at::Tensor loss0;
  // best_hist[t] = the summed best-per-group loss after iterate t.
  std::vector<double> best_hist;
  for (int it = 0;; ++it) {
    throw_if_preempted("the GLVQ learning steps");
    const at::Tensor G = P * sig0;
    const at::Tensor mu = opt.companding ? kMuLo + kMuSpan * at::sigmoid(theta) : init.mu;
    const GlvqParams p{G, mu, init.scale, init.bits};
    // Re-round with the current G and mu, then the exact loss of that iterate.
    const GlvqRounder r = glvq_make_rounder(G, p.bits, opt.rounding);
    const GlvqGroupCodes c = glvq_quantize_groups(Wg, p, opt.companding, r, F);
    const at::Tensor E = Wg - c.W_hat;
    const at::Tensor EA = at::bmm(E, A);
    const at::Tensor loss = (EA * E).sum({1, 2});
    if (it == 0) {
      loss0 = loss.clamp_min(1e-30);
      res.init_loss = loss.clone();
    }
    const at::Tensor better = loss < res.best_loss;
    res.best.G = at::where(better.reshape({B, 1, 1}), G, res.best.G);
    res.best.mu = at::where(better, mu, res.best.mu);
    res.best_loss = at::where(better, loss, res.best_loss);
    const double total = loss.sum().item<double>();
    res.history.push_back(total);
    best_hist.push_back(res.best_loss.sum().item<double>());
    // Re-rounding makes consecutive losses noisy (two can coincide by chance):
    // stop when the best loss has gained less than eps over the last kPatience steps.
    const size_t n = best_hist.size();
    if (it >= opt.iters ||
        (n > kPatience && best_hist[n - 1 - kPatience] - best_hist[n - 1] < opt.eps * best_hist[n - 1 - kPatience]))
      break;

    // Cosine decay: early steps move G far, late ones polish (the best iterate is kept).
    const double lr = opt.cosine ? opt.lr * 0.5 * (1 + std::cos(kPi * it / std::max(opt.iters, 1))) : opt.lr;
    const GlvqLearnGrad g = glvq_learn_gradient(EA, c.Z, G, mu, init.scale, loss0, G0, opt.lambda, opt.companding);
    if (opt.companding) {
      // mu = 10 + 245 sigmoid(theta).
      const at::Tensor sg = at::sigmoid(theta);
      adam_t.step(theta, g.dmu * (kMuSpan * sg * (1 - sg)), lr);
    }
    adam_p.step(P, g.dG * sig0, lr);

    // Spectral projection: singular values of P (= G / sigma_max(G0)) into [sigma_min, sigma_max].
    auto [Us, S, Vh] = at::linalg_svd(P, /*full_matrices=*/false);
    const at::Tensor Sc = S.clamp(opt.sigma_min, opt.sigma_max);
    if (!at::equal(Sc, S)) P = at::matmul(Us * Sc.unsqueeze(1), Vh);
  }
  return res;
}

}  // namespace glvq
