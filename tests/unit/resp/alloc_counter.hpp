#pragma once

// Counts bytes requested from the global operator new while a probe is alive, so tests can show
// that a length announced by a peer does not size an allocation.

#include <cstddef>

namespace keygate::resp::test {

class AllocationProbe {
 public:
  AllocationProbe();
  ~AllocationProbe();
  AllocationProbe(const AllocationProbe&) = delete;
  AllocationProbe& operator=(const AllocationProbe&) = delete;

  // Largest single allocation and total bytes allocated since construction.
  std::size_t largest() const;
  std::size_t total() const;
};

}  // namespace keygate::resp::test
