// TD3+BC's update (Fujimoto & Gu, 2021) in C++ on ATen: the arithmetic of offrl's hand-derived
// update (offrl/algos/td3bc_fused.py) with no Python between the operations. A measuring stick
// for benchmarks/eager_floor.py --cxx (how much of an update is Python's per-call cost), not a
// way to train: it has no metrics, no checkpoints, and TD3+BC's paper defaults built in.
// eager_floor.py compiles it with torch.utils.cpp_extension and checks that it computes the
// same weights as offrl before timing it.
#include <torch/extension.h>

#include <utility>
#include <vector>

using at::Tensor;
using Tensors = std::vector<Tensor>;
using Sizes = std::vector<std::pair<int64_t, int64_t>>;

namespace {

constexpr int64_t kThin = 8;  // as offrl.nn.mlp._THIN: thin output layers use the W^T h^T form

// The ensemble's output [E, B, out] and the activations the backward pass needs (the input
// broadcast to [E, B, in], then each hidden layer's post-ReLU output): offrl.nn.mlp._forward.
std::pair<Tensor, Tensors> forward(const Tensor& x, const Tensors& w, const Tensors& b) {
  const int64_t e = w[0].size(0);
  Tensor h = x.dim() == 2 ? x.unsqueeze(0).expand({e, x.size(0), x.size(1)}) : x;
  Tensors saved{h};
  const size_t last = w.size() - 1;
  for (size_t i = 0; i <= last; ++i) {
    if (i == last && w[i].size(2) <= kThin) {
      h = at::baddbmm(b[i].transpose(1, 2), w[i].transpose(1, 2), h.transpose(1, 2))
              .transpose(1, 2);
    } else {
      h = at::baddbmm(b[i], h, w[i]);
    }
    if (i < last) {
      h.relu_();
      saved.push_back(h);
    }
  }
  return {h, saved};
}

// The chain rule from dL/d(output) down: weight gradients into gw/gb (if given), returns the
// input gradient when need_x: offrl.nn.mlp._backward.
Tensor backward(Tensor g, const Tensors& acts, const Tensors& w, Tensors* gw, Tensors* gb,
                bool need_x) {
  const int last = static_cast<int>(w.size()) - 1;
  for (int i = last; i >= 0; --i) {
    if (i < last) at::threshold_backward_out(g, g, acts[i + 1], 0);
    if (gw != nullptr) {
      if (w[i].size(2) <= kThin) {
        Tensor out = (*gw)[i].transpose(1, 2);
        at::bmm_out(out, g.transpose(1, 2), acts[i]);
      } else {
        at::bmm_out((*gw)[i], acts[i].transpose(1, 2), g);
      }
      at::sum_out((*gb)[i], g, {1}, true);
    }
    if (i > 0 || need_x) {
      g = w[i].size(1) == 1 ? g * w[i].transpose(1, 2) : at::bmm(g, w[i].transpose(1, 2));
    }
  }
  return g;
}

// Per-layer views (W [E, in, out], b [E, 1, out]) of a flat tensor: offrl.nn.mlp._layer_views.
void layer_views(const Tensor& flat, const Sizes& sizes, int64_t e, Tensors& w, Tensors& b) {
  int64_t offset = 0;
  for (const auto& [fan_in, fan_out] : sizes) {
    w.push_back(flat.narrow(0, offset, e * fan_in * fan_out).view({e, fan_in, fan_out}));
    offset += e * fan_in * fan_out;
    b.push_back(flat.narrow(0, offset, e * fan_out).view({e, 1, fan_out}));
    offset += e * fan_out;
  }
}

// One network: its flat weights (shared with Python, updated in place) and, if trained, its
// gradient buffer and Adam state.
struct Net {
  Tensor flat, grad, exp_avg, exp_avg_sq, step;
  Tensors w, b, gw, gb;

  Net(Tensor f, const Sizes& sizes, int64_t e, bool trained) : flat(std::move(f)) {
    layer_views(flat, sizes, e, w, b);
    if (trained) {
      grad = at::empty_like(flat);
      exp_avg = at::zeros_like(flat);
      exp_avg_sq = at::zeros_like(flat);
      step = at::zeros({});
      layer_views(grad, sizes, e, gw, gb);
    }
  }

  void adam(double lr) {
    step.add_(1);
    at::_fused_adam_({flat}, {grad}, {exp_avg}, {exp_avg_sq}, {}, {step}, lr, 0.9, 0.999, 0.0,
                     1e-8, false, false);
  }
};

}  // namespace

struct TD3BCFloor {
  // The paper's defaults (Table 3), as offrl's TD3BCConfig.
  static constexpr double kAlpha = 2.5, kGamma = 0.99, kTau = 0.005, kLr = 3e-4;
  static constexpr int64_t kPolicyFreq = 2;

  Net actor, critic, actor_target, critic_target;
  Tensors q1_w, q1_b;  // critic 0 only: the actor's Q term
  int64_t obs_dim, updates = 0;

  TD3BCFloor(Tensor actor_flat, Tensor critic_flat, Tensor actor_target_flat,
             Tensor critic_target_flat, const Sizes& actor_sizes, const Sizes& critic_sizes,
             int64_t num_critics, int64_t obs_dim)
      : actor(std::move(actor_flat), actor_sizes, 1, true),
        critic(std::move(critic_flat), critic_sizes, num_critics, true),
        actor_target(std::move(actor_target_flat), actor_sizes, 1, false),
        critic_target(std::move(critic_target_flat), critic_sizes, num_critics, false),
        obs_dim(obs_dim) {
    for (size_t i = 0; i < critic.w.size(); ++i) {
      q1_w.push_back(critic.w[i].narrow(0, 0, 1));
      q1_b.push_back(critic.b[i].narrow(0, 0, 1));
    }
  }

  // One update on a batch; `noise` is the clipped target-smoothing noise [B, act_dim].
  void update(const Tensor& obs, const Tensor& actions, const Tensor& rewards,
              const Tensor& next_obs, const Tensor& dones, const Tensor& noise) {
    at::NoGradGuard no_grad;
    const int64_t b = obs.size(0);
    // y = r + gamma (1 - d) min_i Q'_i(s', clip(pi'(s') + noise, -1, 1))
    Tensor next_a = forward(next_obs, actor_target.w, actor_target.b).first.select(0, 0);
    next_a = next_a.tanh_().add_(noise).clamp_(-1.0, 1.0);
    Tensor next_q = forward(at::cat({next_obs, next_a}, -1), critic_target.w, critic_target.b)
                        .first.amin(0)
                        .view({b});
    Tensor y = rewards + kGamma * (1.0 - dones) * next_q;
    // Critic: dL/dQ_i = 2 (Q_i - y) / B.
    auto [q, acts] = forward(at::cat({obs, actions}, -1), critic.w, critic.b);
    backward((q - y.view({1, b, 1})).mul_(2.0 / b), acts, critic.w, &critic.gw, &critic.gb,
             false);
    critic.adam(kLr);
    if (++updates % kPolicyFreq) return;
    // Actor: L = -lambda mean Q1(s, pi) + mean (pi - a)^2, lambda = alpha / mean |Q1|.
    auto [u, actor_acts] = forward(obs, actor.w, actor.b);
    Tensor pi = u.select(0, 0).tanh();
    auto [q1, q1_acts] = forward(at::cat({obs, pi}, -1), q1_w, q1_b);
    Tensor dq1 = at::full_like(q1, -1.0 / b).mul_(kAlpha / q1.abs().mean());
    Tensor dx = backward(dq1, q1_acts, q1_w, nullptr, nullptr, true);
    Tensor dpi = (pi - actions).mul_(2.0 / pi.numel()).add_(
        dx.select(0, 0).narrow(1, obs_dim, actions.size(1)));
    backward(dpi.mul_(1.0 - pi * pi).unsqueeze(0), actor_acts, actor.w, &actor.gw, &actor.gb,
             false);
    actor.adam(kLr);
    actor_target.flat.lerp_(actor.flat, kTau);
    critic_target.flat.lerp_(critic.flat, kTau);
  }
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<TD3BCFloor>(m, "TD3BCFloor")
      .def(py::init<Tensor, Tensor, Tensor, Tensor, Sizes, Sizes, int64_t, int64_t>())
      .def("update", &TD3BCFloor::update);
}
