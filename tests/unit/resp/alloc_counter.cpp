#include "alloc_counter.hpp"

#include <cstdlib>
#include <new>

// Replacing the global allocation functions is the only seam that sees every allocation,
// including those inside std::vector and std::string. Counting is per thread and only while a
// probe exists; otherwise these behave like the default ones.

namespace {

thread_local bool tCounting = false;
thread_local std::size_t tLargest = 0;
thread_local std::size_t tTotal = 0;

void* allocate(std::size_t size) {
  if (tCounting) {
    tTotal += size;
    if (size > tLargest) tLargest = size;
  }
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

// Every variant that pairs with free() is replaced, or the sanitizers see mismatched pairs.
void* operator new(std::size_t size) {
  return allocate(size);
}
void* operator new[](std::size_t size) {
  return allocate(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return allocate(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace keygate::resp::test {

AllocationProbe::AllocationProbe() {
  tLargest = 0;
  tTotal = 0;
  tCounting = true;
}

AllocationProbe::~AllocationProbe() {
  tCounting = false;
}

std::size_t AllocationProbe::largest() const {
  return tLargest;
}
std::size_t AllocationProbe::total() const {
  return tTotal;
}

}  // namespace keygate::resp::test
