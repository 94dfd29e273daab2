{
  "targets": [
    {
      "target_name": "conntrack",
      "sources": [
        "native/addon.cc",
        "native/socket.cc",
        "native/poller.cc",
        "native/request.cc",
        "native/sender.cc",
        "native/recv.cc",
        "native/dumper.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "libraries": [ "-lmnl" ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_ADDON_API_CPP_EXCEPTIONS"
      ],
      "cflags_cc!": [ "-fno-exceptions", "-fno-rtti" ],
      "cflags_cc": [ "-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter" ],
      "cflags": [ "-O2" ]
    }
  ]
}
