#include "worker/train.h"

#include <cmath>

namespace nas {

void ClearGradients(torch::nn::Module& module) {
  for (auto& p : module.parameters()) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  }
}

void PathSgd::Step(torch::nn::Module& module, double lr) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    torch::Tensor& p = item.value();
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    torch::Tensor d = options_.weight_decay != 0 ? g.add(p, options_.weight_decay) : g.clone();
    if (options_.momentum != 0) {
      auto it = momentum_.find(item.key());
      if (it == momentum_.end()) {
        it = momentum_.emplace(item.key(), d.clone()).first;  // as torch: buf = d on first step
      } else {
        it->second.mul_(options_.momentum).add_(d);
      }
      if (options_.nesterov) {
        d.add_(it->second, options_.momentum);
      } else {
        d = it->second;
      }
    }
    p.add_(d, -lr);
  }
}

int64_t PathSgd::StateBytes() const {
  int64_t n = 0;
  for (const auto& [k, t] : momentum_) n += t.numel() * t.element_size();
  return n;
}

torch::Tensor SmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                   double eps) {
  torch::Tensor logp = torch::log_softmax(logits, 1);
  torch::Tensor nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1);
  if (eps <= 0) return nll.mean();
  torch::Tensor smooth = -logp.mean(1);
  return ((1 - eps) * nll + eps * smooth).mean();
}

double CosineLr(double base_lr, int64_t step, int64_t total) {
  if (total <= 0) return base_lr;
  return 0.5 * base_lr * (1 + std::cos(M_PI * static_cast<double>(step) / total));
}

namespace {
double Accuracy(const torch::Tensor& logits, const torch::Tensor& y) {
  return logits.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
}
}  // namespace

WeightStepResult WeightStep(SuperNet& net, PathSgd& sgd, const std::vector<int>& path,
                            const torch::Tensor& x, const torch::Tensor& y, double lr,
                            double label_smoothing) {
  net->train();
  ClearGradients(*net);
  torch::Tensor logits = net->ForwardPath(x, path);
  torch::Tensor loss = SmoothedCrossEntropy(logits, y, label_smoothing);
  loss.backward();
  sgd.Step(*net, lr);
  WeightStepResult r;
  r.loss = loss.item<double>();
  r.accuracy = Accuracy(logits.detach(), y);
  return r;
}

ArchStepResult ArchStep(SuperNet& net, const std::vector<PairSample>& pairs,
                        const torch::Tensor& x, const torch::Tensor& y) {
  net->train();
  int n = net->space.num_edges();
  torch::Tensor gates =
      torch::zeros({n, 2}, torch::TensorOptions().dtype(x.scalar_type()).device(x.device()));
  gates.select(1, 0).fill_(1.0);  // active gate 1, other gate 0
  gates.set_requires_grad(true);
  torch::Tensor logits = net->ForwardGated(x, pairs, gates);
  torch::Tensor ce = torch::nn::functional::cross_entropy(logits, y);
  ArchStepResult r;
  r.ce = ce.item<double>();
  r.accuracy = Accuracy(logits.detach(), y);
  // Only the gates' gradient: weights get none.
  std::vector<torch::Tensor> g =
      torch::autograd::grad({ce}, {gates}, {}, /*retain_graph=*/false, /*create_graph=*/false,
                            /*allow_unused=*/true);
  torch::Tensor gg =
      (g[0].defined() ? g[0] : torch::zeros({n, 2})).to(torch::kCPU).to(torch::kFloat64);
  auto acc = gg.accessor<double, 2>();
  for (int e = 0; e < n; ++e) {
    r.gate_grads.push_back({acc[e][0], acc[e][1]});
    r.active_is_zero.push_back(net->space.edges()[e].candidates[pairs[e].active].zero);
  }
  return r;
}

double PathBatchAccuracy(SuperNet& net, const std::vector<int>& path, const torch::Tensor& x,
                         const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  net->train();
  return Accuracy(net->ForwardPath(x, path), y);
}

EvalResult Evaluate(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                    const DataSet& data, int batch_size) {
  Batcher b(data, batch_size, 0, {}, /*shuffle=*/false, /*drop_last=*/false);
  return Evaluate(forward, b);
}

EvalResult Evaluate(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                    BatchSource& data) {
  torch::NoGradGuard no_grad;
  torch::Tensor x, y;
  double loss = 0, correct = 0;
  int64_t count = 0;
  const int64_t batches = data.batches_per_epoch();
  for (int64_t b = 0; b < batches; ++b) {
    absl::Status s = data.Batch(0, b, &x, &y);
    TORCH_CHECK(s.ok(), "evaluation: ", s.message());
    torch::Tensor logits = forward(x);
    loss += torch::nn::functional::cross_entropy(
                logits, y,
                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<double>();
    count += y.size(0);
  }
  EvalResult r;
  r.count = count;
  if (count > 0) {
    r.loss = loss / count;
    r.accuracy = correct / count;
  }
  return r;
}

void TrainNetwork(Network& net, const DataSet& train, const TrainOptions& o,
                  const std::function<void(const TrainProgress&)>& progress) {
  Batcher b(train, o.batch_size, o.seed, o.augment);
  TrainNetwork(net, b, o, progress);
}

void TrainNetwork(Network& net, BatchSource& train, const TrainOptions& o,
                  const std::function<void(const TrainProgress&)>& progress) {
  PathSgd sgd(o.sgd);
  int64_t per_epoch = train.batches_per_epoch();
  int64_t total = per_epoch * o.epochs;
  int64_t step = 0;
  torch::Tensor x, y;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    net->train();
    // Epoch e + 1 of the source: the order a Batcher's Reset() gave this loop from the start.
    const int64_t source_epoch = epoch + 1;
    for (int64_t b = 0; b < per_epoch; ++b) {
      absl::Status s = train.Batch(source_epoch, b, &x, &y);
      TORCH_CHECK(s.ok(), "training: ", s.message());
      if (!o.device.is_cpu()) {
        x = x.to(o.device);
        y = y.to(o.device);
      }
      ClearGradients(*net);
      torch::Tensor logits = net->forward(x);
      torch::Tensor loss = SmoothedCrossEntropy(logits, y, o.label_smoothing);
      loss.backward();
      sgd.Step(*net, CosineLr(o.lr, step, total));
      ++step;
      if (progress) {
        TrainProgress p;
        p.epoch = epoch;
        p.step = step;
        p.total_steps = total;
        p.loss = loss.item<double>();
        p.accuracy = Accuracy(logits.detach(), y);
        progress(p);
      }
    }
  }
  net->eval();
}

}  // namespace nas
