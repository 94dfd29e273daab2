// Bench-only addon: the "build objects in C++" decode design. Walks the same ctnetlink
// dump bytes as lib/flows/flow.ts and builds each flow as a JS object property by property with
// N-API (napi_set_named_property), returning an array. Compiled by bench/decode.bench.js;
// not part of the package. Decodes the common fields only (tuples, status, timeout, mark,
// zone, use, id), so it is a lower bound on that design's cost.
#include <node_api.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

static uint16_t le16(const uint8_t* p) { return p[0] | (p[1] << 8); }
static uint32_t be32(const uint8_t* p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void set_u32(napi_env env, napi_value o, const char* k, uint32_t v) {
  napi_value x;
  napi_create_uint32(env, v, &x);
  napi_set_named_property(env, o, k, x);
}
static void set_str(napi_env env, napi_value o, const char* k, const char* s) {
  napi_value x;
  napi_create_string_latin1(env, s, NAPI_AUTO_LENGTH, &x);
  napi_set_named_property(env, o, k, x);
}

static napi_value tuple(napi_env env, const uint8_t* p, const uint8_t* e, uint32_t* proto) {
  napi_value t;
  napi_create_object(env, &t);
  while (p + 4 <= e) {
    uint16_t l = le16(p), ty = le16(p + 2) & 0x3fff;
    if (l < 4 || p + l > e) break;
    const uint8_t* q = p + 4;
    while (q + 4 <= p + l) {
      uint16_t ql = le16(q), qt = le16(q + 2) & 0x3fff;
      if (ql < 4 || q + ql > p + l) break;
      char buf[64];
      if (ty == 1 && (qt == 1 || qt == 2) && ql == 8) {
        inet_ntop(AF_INET, q + 4, buf, sizeof buf);
        set_str(env, t, qt == 1 ? "src" : "dst", buf);
      } else if (ty == 1 && (qt == 3 || qt == 4) && ql == 20) {
        inet_ntop(AF_INET6, q + 4, buf, sizeof buf);
        set_str(env, t, qt == 3 ? "src" : "dst", buf);
      } else if (ty == 2 && qt == 1) {
        *proto = q[4];
      } else if (ty == 2 && (qt == 2 || qt == 3)) {
        set_u32(env, t, qt == 2 ? "sport" : "dport", (q[4] << 8) | q[5]);
      }
      q += (ql + 3) & ~3;
    }
    p += (l + 3) & ~3;
  }
  return t;
}

// decode(buffer, offsets: Uint32Array of [off, len] pairs) -> object[]
static napi_value Decode(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  uint8_t* data;
  size_t len;
  napi_get_buffer_info(env, argv[0], (void**)&data, &len);
  napi_typedarray_type tt;
  size_t n;
  void* offs;
  napi_get_typedarray_info(env, argv[1], &tt, &n, &offs, nullptr, nullptr);
  const uint32_t* o = (const uint32_t*)offs;
  napi_value out;
  napi_create_array_with_length(env, n / 2, &out);
  for (size_t i = 0; i < n; i += 2) {
    const uint8_t* p = data + o[i] + 20;
    const uint8_t* e = data + o[i] + o[i + 1];
    napi_value f;
    napi_create_object(env, &f);
    uint32_t proto = 0;
    while (p + 4 <= e) {
      uint16_t l = le16(p), t = le16(p + 2) & 0x3fff;
      if (l < 4 || p + l > e) break;
      if (t == 1) napi_set_named_property(env, f, "orig", tuple(env, p + 4, p + l, &proto));
      else if (t == 2) napi_set_named_property(env, f, "reply", tuple(env, p + 4, p + l, &proto));
      else if (t == 3) set_u32(env, f, "statusBits", be32(p + 4));
      else if (t == 7) set_u32(env, f, "timeout", be32(p + 4));
      else if (t == 8) set_u32(env, f, "mark", be32(p + 4));
      else if (t == 11) set_u32(env, f, "use", be32(p + 4));
      else if (t == 12) set_u32(env, f, "id", be32(p + 4));
      else if (t == 18) set_u32(env, f, "zone", (p[4] << 8) | p[5]);
      p += (l + 3) & ~3;
    }
    set_str(env, f, "proto", proto == 17 ? "udp" : proto == 6 ? "tcp" : "other");
    napi_set_element(env, out, i / 2, f);
  }
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "decode", NAPI_AUTO_LENGTH, Decode, nullptr, &fn);
  napi_set_named_property(env, exports, "decode", fn);
  return exports;
}
