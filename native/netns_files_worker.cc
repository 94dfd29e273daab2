#include "netns_files_worker.h"
#include "errors.h"
#include "fault_injection.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <new>

namespace conntrack {

// Larger files are refused (EFBIG): everything this is for is a few KiB of procfs.
static constexpr size_t kMaxFileBytes = 16 << 20;

namespace {

bool ReadFd(int fd, std::string* out, int* err, const char** syscall) {
  out->clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      *syscall = "read";
      return false;
    }
    if (n == 0) return true;
    if (out->size() + static_cast<size_t>(n) > kMaxFileBytes) {
      *err = EFBIG;
      *syscall = "read";
      return false;
    }
    FaultInjection::AllocationPoint();
    out->append(buf, static_cast<size_t>(n));
  }
}

bool ReadWhole(const std::string& path, std::string* out, int* err, const char** syscall) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    *syscall = "open";
    return false;
  }
  bool ok;
  try {
    ok = ReadFd(fd, out, err, syscall);
  } catch (...) {  // std::bad_alloc: reported by NetnsThread::Run
    close(fd);
    throw;
  }
  close(fd);
  return ok;
}

bool WriteWhole(const std::string& path, const std::string& data, int* err, const char** syscall) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    *syscall = "open";
    return false;
  }
  // A sysctl takes its value in one write() at offset 0; the loop only matters elsewhere.
  size_t off = 0;
  while (off < data.size() || data.empty()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      *syscall = "write";
      close(fd);
      return false;
    }
    if (data.empty()) break;
    off += static_cast<size_t>(n);
  }
  close(fd);
  return true;
}

// Mode bits (st_mode & 07777) and whether this thread may write the file.
bool StatFile(const std::string& path, int* mode, bool* writable, bool* is_dir, int* err, const char** syscall) {
  struct stat st;
  if (stat(path.c_str(), &st) < 0) {
    *err = errno;
    *syscall = "stat";
    return false;
  }
  *mode = static_cast<int>(st.st_mode & 07777);
  *is_dir = S_ISDIR(st.st_mode);
  *writable = access(path.c_str(), W_OK) == 0;
  return true;
}

}  // namespace

Napi::Value NetnsFilesWorker::NetnsFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    NetnsThread ns = NetnsThread::FromOptions(env, info[0]);
    if (!info[1].IsArray()) throw Napi::TypeError::New(env, "netnsFiles: ops must be an array");
    Napi::Array list = info[1].As<Napi::Array>();
    std::vector<Op> ops;
    ops.reserve(list.Length());
    auto str = [&](Napi::Object o, const char* key, uint32_t i, bool required) -> std::string {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined() && !required) return std::string();
      if (!v.IsString())
        throw Napi::TypeError::New(env, "netnsFiles: ops[" + std::to_string(i) + "]." + key + " must be a string");
      std::string s = v.As<Napi::String>().Utf8Value();
      if (std::string(key) != "data" && s.find('\0') != std::string::npos)
        throw Napi::TypeError::New(env, "netnsFiles: ops[" + std::to_string(i) + "]." + key + " must not contain a NUL byte");
      return s;
    };
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, "netnsFiles: ops[" + std::to_string(i) + "] must be an object");
      Napi::Object o = v.As<Napi::Object>();
      std::string kind = str(o, "op", i, true);
      Op op;
      op.path = str(o, "path", i, true);
      if (op.path.empty() || op.path[0] != '/')
        throw Napi::TypeError::New(env, "netnsFiles: ops[" + std::to_string(i) + "].path must be an absolute path");
      if (kind == "read") {
        op.kind = Kind::kRead;
      } else if (kind == "write") {
        op.kind = Kind::kWrite;
        op.data = str(o, "data", i, true);
      } else if (kind == "stat") {
        op.kind = Kind::kStat;
      } else if (kind == "list") {
        op.kind = Kind::kList;
        op.prefix = str(o, "prefix", i, false);
        op.read = o.Get("read").ToBoolean();
      } else {
        throw Napi::TypeError::New(env, "netnsFiles: ops[" + std::to_string(i) +
                                            "].op must be 'read', 'write', 'stat' or 'list'");
      }
      ops.push_back(std::move(op));
    }
    bool stop = info[2].IsObject() && info[2].As<Napi::Object>().Get("stopOnError").ToBoolean();
    auto* worker = new NetnsFilesWorker(env, std::move(ns), std::move(ops), stop);
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  } catch (const std::bad_alloc&) {
    ThrowErrno(env, "malloc", ENOMEM);
  }
}

NetnsFilesWorker::NetnsFilesWorker(Napi::Env env, NetnsThread ns, std::vector<Op> ops, bool stop_on_error)
    : Napi::AsyncWorker(env, "conntrack.netnsFiles"),
      deferred_(Napi::Promise::Deferred::New(env)),
      ns_(std::move(ns)),
      ops_(std::move(ops)),
      stop_on_error_(stop_on_error) {}

void NetnsFilesWorker::Execute() {
  joined_ = ns_.Run([this] { RunOps(); });
}

// On the helper thread, inside the namespace.
void NetnsFilesWorker::RunOps() {
  results_.resize(ops_.size());
  bool stopped = false;
  for (size_t i = 0; i < ops_.size(); i++) {
    const Op& op = ops_[i];
    Result& r = results_[i];
    if (stopped) {
      r.skipped = true;
      continue;
    }
    bool ok = true;
    bool is_dir = false;
    switch (op.kind) {
      case Kind::kRead:
        ok = ReadWhole(op.path, &r.data, &r.err, &r.syscall);
        r.has_data = ok;
        break;
      case Kind::kWrite:
        ok = WriteWhole(op.path, op.data, &r.err, &r.syscall);
        break;
      case Kind::kStat:
        ok = StatFile(op.path, &r.mode, &r.writable, &is_dir, &r.err, &r.syscall);
        break;
      case Kind::kList: {
        DIR* dir = opendir(op.path.c_str());
        if (dir == nullptr) {
          r.err = errno;
          r.syscall = "opendir";
          ok = false;
          break;
        }
        std::vector<std::string> names;
        try {
          errno = 0;
          while (struct dirent* d = readdir(dir)) {
            std::string name(d->d_name);
            if (name == "." || name == "..") continue;
            if (name.compare(0, op.prefix.size(), op.prefix) != 0) continue;
            FaultInjection::AllocationPoint();
            names.push_back(std::move(name));
          }
        } catch (...) {
          closedir(dir);
          throw;
        }
        closedir(dir);
        std::sort(names.begin(), names.end());
        for (std::string& name : names) {
          Entry e;
          e.name = std::move(name);
          std::string file = op.path + (op.path.back() == '/' ? "" : "/") + e.name;
          if (!StatFile(file, &e.mode, &e.writable, &e.is_dir, &e.err, &e.syscall)) {
            r.entries.push_back(std::move(e));
            continue;
          }
          if (op.read && !e.is_dir) e.has_data = ReadWhole(file, &e.data, &e.err, &e.syscall);
          r.entries.push_back(std::move(e));
        }
        break;
      }
    }
    if (!ok && stop_on_error_) stopped = true;
  }
}

static void PutErrno(Napi::Env env, Napi::Object o, int err, const char* syscall) {
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("syscall", Napi::String::New(env, syscall ? syscall : "unknown"));
}

void NetnsFilesWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (!joined_) {
    deferred_.Reject(ns_.MakeError(env).Value());
    return;
  }
  try {
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); i++) {
      const Result& r = results_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("ok", Napi::Boolean::New(env, !r.skipped && r.err == 0));
      if (r.skipped) {
        o.Set("skipped", Napi::Boolean::New(env, true));
      } else if (r.err != 0) {
        PutErrno(env, o, r.err, r.syscall);
      } else {
        if (r.has_data) o.Set("data", Napi::String::New(env, r.data));
        if (ops_[i].kind == Kind::kStat) {
          o.Set("mode", Napi::Number::New(env, r.mode));
          o.Set("writable", Napi::Boolean::New(env, r.writable));
        }
        if (ops_[i].kind == Kind::kList) {
          Napi::Array entries = Napi::Array::New(env, r.entries.size());
          for (size_t k = 0; k < r.entries.size(); k++) {
            const Entry& e = r.entries[k];
            Napi::Object eo = Napi::Object::New(env);
            eo.Set("name", Napi::String::New(env, e.name));
            if (e.mode >= 0) {
              eo.Set("mode", Napi::Number::New(env, e.mode));
              eo.Set("writable", Napi::Boolean::New(env, e.writable));
              eo.Set("isDirectory", Napi::Boolean::New(env, e.is_dir));
            }
            if (e.has_data) eo.Set("data", Napi::String::New(env, e.data));
            if (e.err != 0) PutErrno(env, eo, e.err, e.syscall);
            entries.Set(static_cast<uint32_t>(k), eo);
          }
          o.Set("entries", entries);
        }
      }
      out.Set(static_cast<uint32_t>(i), o);
    }
    deferred_.Resolve(out);
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const std::bad_alloc&) {
    deferred_.Reject(ErrnoError(env, "malloc", ENOMEM).Value());
  }
}

void NetnsFilesWorker::OnError(const Napi::Error& e) {
  Napi::HandleScope scope(Env());
  deferred_.Reject(ErrnoError(Env(), std::string("netnsFiles: ") + e.Message(), "malloc", ENOMEM).Value());
}

}  // namespace conntrack
