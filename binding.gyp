{
  "variables": {
    "static_runtime%": "<!(node -p \"process.env.CONNTRACK_STATIC_RUNTIME === '1' ? 1 : 0\")",
    # `node-gyp rebuild -- -Dsanitize=1` (scripts/test-native-asan.sh): AddressSanitizer and
    # UndefinedBehaviorSanitizer, for the sanitizer run of the integration suite.
    "sanitize%": 0
  },
  "targets": [
    {
      "target_name": "conntrack",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/netns_thread.cc",
        "native/netns_files_worker.cc",
        "native/open_socket_worker.cc",
        "native/socket.cc",
        "native/request.cc",
        "native/poller.cc",
        "native/reader_thread.cc",
        "native/sender.cc",
        "native/recv.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "libraries": [ "-lmnl" ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        # In an environment that is being torn down (worker.terminate(), process.exit() in
        # a worker) every N-API call that could run JS fails, napi_throw included. Without
        # this, node-addon-api then throws a second Napi::Error out of its noexcept callback
        # wrappers (method calls, AsyncWorker completion) and std::terminate aborts the
        # whole process; with it, the error is dropped, as no JS is left to see it.
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags_cc!": [ "-fno-exceptions", "-fno-rtti" ],
      "cflags_cc": [ "-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter" ],
      "cflags": [ "-O2" ],
      "conditions": [
        # Prebuilds (scripts/prebuild.sh sets CONNTRACK_STATIC_RUNTIME=1) carry their own
        # libstdc++ and libgcc, so they load where the system libstdc++ is older than the
        # build machine's (GCC 11 on RHEL 9, Amazon Linux 2023, Ubuntu 22.04). Their
        # symbols stay hidden so they never interpose on the host's C++ runtime.
        [ "static_runtime==1", {
          "ldflags": [ "-static-libstdc++", "-Wl,--exclude-libs,ALL", "-Wl,--gc-sections" ]
        } ],
        [ "sanitize==1", {
          "cflags_cc": [ "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-g", "-O1" ],
          "cflags": [ "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1" ],
          "ldflags": [ "-fsanitize=address,undefined", "-shared-libasan" ]
        } ]
      ]
    }
  ]
}
