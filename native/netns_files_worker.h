// netnsFiles(target, ops, options): reads and writes files as a thread inside a network
// namespace sees them, in one call, on a NetnsThread helper started from the libuv thread
// pool (the JS thread neither waits nor changes namespace). For the nf_conntrack sysctls
// (/proc/sys/net/netfilter/...) and /proc/thread-self/net/stat/nf_conntrack: both show
// the namespace of the thread that opens them (/proc/self/net and /proc/net follow the
// thread group leader instead, so they would show the caller's namespace).
//
// The operations run in order; each gets its own result (ok, or errno and syscall).
// With { stopOnError: true } the operations after the first failure are not run (their
// results say skipped), which lets the caller build all-or-nothing writes: check, write,
// and on a failure write the old values back.
#pragma once

#include <napi.h>
#include <string>
#include <vector>
#include "netns_thread.h"

namespace conntrack {

class NetnsFilesWorker : public Napi::AsyncWorker {
 public:
  // The JS entry point; returns a Promise of one result per operation.
  static Napi::Value NetnsFiles(const Napi::CallbackInfo& info);

  enum class Kind { kRead, kWrite, kStat, kList };
  struct Op {
    Kind kind;
    std::string path;
    std::string data;    // kWrite
    std::string prefix;  // kList: only names starting with this
    bool read = false;   // kList: also read each regular file
  };
  // A failure, or what was found: file text, mode bits, write access, directory entries.
  struct Entry {
    std::string name;
    bool is_dir = false;
    int mode = -1;
    bool writable = false;
    bool has_data = false;
    std::string data;
    int err = 0;
    const char* syscall = nullptr;
  };
  struct Result {
    bool skipped = false;
    int err = 0;
    const char* syscall = nullptr;
    bool has_data = false;
    std::string data;
    int mode = -1;
    bool writable = false;
    std::vector<Entry> entries;
  };

  NetnsFilesWorker(Napi::Env env, NetnsThread ns, std::vector<Op> ops, bool stop_on_error);

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  void RunOps();

  Napi::Promise::Deferred deferred_;
  NetnsThread ns_;
  std::vector<Op> ops_;
  bool stop_on_error_;
  std::vector<Result> results_;
  bool joined_ = false;
};

}  // namespace conntrack
