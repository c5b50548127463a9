#include "policies/hyperloglog.hpp"

#include <algorithm>
#include <cmath>

namespace keygate::policies {

HyperLogLog::HyperLogLog(unsigned precision)
    : precision_(std::clamp(precision, kMinPrecision, kMaxPrecision)) {}

void HyperLogLog::allocate() {
  registers_.assign(std::size_t{1} << precision_, 0);
}

bool HyperLogLog::merge(const HyperLogLog& other) {
  if (other.precision_ != precision_) return false;
  if (other.registers_.empty()) return true;
  if (registers_.empty()) {
    registers_ = other.registers_;
    return true;
  }
  for (std::size_t i = 0; i < registers_.size(); ++i) {
    registers_[i] = std::max(registers_[i], other.registers_[i]);
  }
  return true;
}

double HyperLogLog::estimate() const {
  if (registers_.empty()) return 0;
  const double m = static_cast<double>(registers_.size());
  double sum = 0;
  std::size_t zeros = 0;
  for (const std::uint8_t r : registers_) {
    sum += std::ldexp(1.0, -static_cast<int>(r));
    zeros += r == 0;
  }
  // The bias constant alpha_m of the paper: exact values for m = 16, 32, 64, the asymptotic
  // formula from m = 128 on.
  double alpha;
  switch (registers_.size()) {
    case 16:
      alpha = 0.673;
      break;
    case 32:
      alpha = 0.697;
      break;
    case 64:
      alpha = 0.709;
      break;
    default:
      alpha = 0.7213 / (1 + 1.079 / m);
      break;
  }
  const double raw = alpha * m * m / sum;
  // Small range: while registers are still empty, linear counting (the expected number of
  // empty registers after n random adds) is far more accurate than the harmonic mean. No
  // large-range correction: with 64-bit hashes collisions matter only near 2^64 / m keys.
  if (raw <= 2.5 * m && zeros != 0) return m * std::log(m / static_cast<double>(zeros));
  return raw;
}

double HyperLogLog::relativeError() const {
  return 1.04 / std::sqrt(static_cast<double>(std::size_t{1} << precision_));
}

}  // namespace keygate::policies
