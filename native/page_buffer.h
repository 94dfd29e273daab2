// A receive block in pages of its own (mmap), not in malloc memory: glibc keeps what a
// thread's arena once held, so blocks that a reader thread allocated for a burst or a dump
// would stay in the process's RSS after they are freed. munmap() hands them back.
#pragma once

#include <sys/mman.h>
#include <cstddef>
#include <new>

namespace conntrack {

class PageBuffer {
 public:
  // Maps `size` bytes (zero pages, touched only as they are written); throws std::bad_alloc.
  static PageBuffer* New(size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    try {
      return new PageBuffer(static_cast<char*>(p), size);
    } catch (const std::bad_alloc&) {
      munmap(p, size);
      throw;
    }
  }
  ~PageBuffer() { munmap(data_, size_); }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  char* data() { return data_; }
  size_t size() const { return size_; }

 private:
  PageBuffer(char* data, size_t size) : data_(data), size_(size) {}
  char* data_;
  size_t size_;
};

}  // namespace conntrack
