// Building ctnetlink requests with libmnl: the netlink and nfgenmsg headers come from here,
// the attribute payload is encoded by lib/ (which owns validation and meaning).
#pragma once

#include <napi.h>

namespace conntrack {

void InitRequest(Napi::Env env, Napi::Object exports);

}  // namespace conntrack
