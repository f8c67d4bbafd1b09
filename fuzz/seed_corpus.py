#!/usr/bin/env python3
"""Writes the seed corpus under corpus/<target>/ (run from fuzz/: python3 seed_corpus.py).

Cursors are sealed like roaming_runtime::cursor::CursorSealer with the fuzz targets' key
(roaming_reliability::fuzz_targets::sealer); requests are hand-encoded protobuf, some valid,
some breaking one rule each, some with bytes no typed client would send.
"""
import base64, hashlib, hmac, os, struct

KEY = hashlib.sha256(b"roaming cursor key v1\0" + b"roaming fuzz cursor key").digest()
OTHER = hashlib.sha256(b"roaming cursor key v1\0" + b"some other key").digest()


def seal(payload, key=KEY):
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + tag).rstrip(b"=")


def fp(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(struct.pack("<Q", len(p)))
        h.update(p)
    return h.digest()[:8]


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vfield(num, n):
    return varint(num << 3) + varint(n)


def lfield(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def conv(t, id_):
    return vfield(1, t) + lfield(2, id_)


def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# history_cursor: version 1, direction, conversation fp, filters fp, position.
conv_fp = fp(b"conversation", b"p:alice:bob")
good = bytes([1, 1]) + conv_fp + bytes(8) + struct.pack(">q", 42)
write("history_cursor", "genuine_backward", seal(good))
write("history_cursor", "genuine_forward", seal(bytes([1, 2]) + conv_fp + bytes(8) + struct.pack(">q", 0)))
write("history_cursor", "position_min", seal(bytes([1, 2]) + conv_fp + bytes(8) + struct.pack(">q", -(2**63))))
write("history_cursor", "bad_direction", seal(bytes([1, 3]) + conv_fp + bytes(8) + struct.pack(">q", 1)))
write("history_cursor", "bad_version", seal(bytes([9, 1]) + conv_fp + bytes(8) + struct.pack(">q", 1)))
write("history_cursor", "short_payload", seal(bytes([1, 1, 2, 3])))
write("history_cursor", "long_payload", seal(good + b"extra"))
write("history_cursor", "other_key", seal(good, OTHER))
write("history_cursor", "truncated", seal(good)[:-3])
write("history_cursor", "standard_b64", base64.b64encode(good + bytes(16)))
write("history_cursor", "empty", b"")
write("history_cursor", "text", b"not a cursor at all")
write("history_cursor", "not_utf8", b"\xc3\x28\xff\xfe")

# list_cursor: version 2, kinds fp, active_since, last_activity, key.
kinds = fp(b"kinds", bytes([1, 2]))
lgood = bytes([2]) + kinds + struct.pack(">q", 1_799_395_200_000) + struct.pack(">q", 1_800_000_000_000) + b"p:alice:bob"
write("list_cursor", "genuine", seal(lgood))
write("list_cursor", "empty_key", seal(lgood[:25]))
write("list_cursor", "key_not_utf8", seal(lgood[:25] + b"\xff\xfe"))
write("list_cursor", "key_with_nul", seal(lgood[:25] + b"g:\x00"))
write("list_cursor", "short_payload", seal(lgood[:24]))
write("list_cursor", "bad_version", seal(bytes([1]) + lgood[1:]))
write("list_cursor", "other_key", seal(lgood, OTHER))
write("list_cursor", "truncated", seal(lgood)[:10])
write("list_cursor", "empty", b"")
write("list_cursor", "text", b"%%%")

# fetch_request
write("fetch_request", "valid_default", lfield(1, conv(1, "bob")))
write("fetch_request", "valid_filters", lfield(1, conv(2, "team")) + vfield(2, 2) + vfield(5, 50) + vfield(6, 100)
      + vfield(7, 0) + vfield(8, 1_800_000_000_000) + lfield(9, "alice") + lfield(9, "bob") + vfield(10, 1) + vfield(10, 8))
write("fetch_request", "anchor", lfield(1, conv(1, "bob")) + lfield(3, "1000001"))
write("fetch_request", "cursor", lfield(1, conv(1, "bob")) + lfield(4, seal(good)))
write("fetch_request", "anchor_and_cursor", lfield(1, conv(1, "bob")) + lfield(3, "1") + lfield(4, seal(good)))
write("fetch_request", "no_conversation", vfield(5, 10))
write("fetch_request", "unknown_type", lfield(1, conv(99, "bob")))
write("fetch_request", "negative_type", lfield(1, conv(-1, "bob")))
write("fetch_request", "unknown_direction", lfield(1, conv(1, "bob")) + vfield(2, 7))
write("fetch_request", "page_size_too_big", lfield(1, conv(1, "bob")) + vfield(5, 51))
write("fetch_request", "max_pages_huge", lfield(1, conv(1, "bob")) + vfield(6, 2**32 - 1))
write("fetch_request", "negative_times", lfield(1, conv(1, "bob")) + vfield(7, -5) + vfield(8, -1))
write("fetch_request", "start_after_end", lfield(1, conv(1, "bob")) + vfield(7, 10) + vfield(8, 5))
write("fetch_request", "bad_sender", lfield(1, conv(1, "bob")) + lfield(9, "a b"))
write("fetch_request", "bad_id", lfield(1, conv(1, "x" * 65)))
write("fetch_request", "bad_anchor", lfield(1, conv(1, "bob")) + lfield(3, "-1"))
write("fetch_request", "not_utf8_id", lfield(1, vfield(1, 1) + lfield(2, b"\xc3\x28")))
write("fetch_request", "truncated", lfield(1, conv(1, "bob"))[:-2])
write("fetch_request", "unknown_field", lfield(1, conv(1, "bob")) + lfield(99, "ignored"))

# append_request
def msg(kind=1, sender="alice", recipient="bob", type_=1, body=b"hi", attrs=(), cid="c-1"):
    m = vfield(1, kind) + lfield(2, sender) + lfield(3, recipient) + vfield(4, type_) + lfield(5, body)
    for k, v in attrs:
        m += lfield(6, lfield(1, k) + lfield(2, v))
    return m + lfield(7, cid)

write("append_request", "valid", lfield(1, msg()))
write("append_request", "valid_batch", lfield(1, msg()) + lfield(1, msg(cid="c-2")) + lfield(1, msg(kind=2, recipient="team", cid="c-3")))
write("append_request", "valid_attributes", lfield(1, msg(attrs=[("k", "v"), ("lang", "fr")])))
write("append_request", "empty", b"")
write("append_request", "unspecified_kind", lfield(1, msg(kind=0)))
write("append_request", "unknown_type", lfield(1, msg(type_=42)))
write("append_request", "empty_client_msg_id", lfield(1, msg(cid="")))
write("append_request", "nul_client_msg_id", lfield(1, msg(cid="a\0b")))
write("append_request", "nul_attribute", lfield(1, msg(attrs=[("k", "a\0")])))
write("append_request", "empty_attribute_key", lfield(1, msg(attrs=[("", "v")])))
write("append_request", "long_attribute", lfield(1, msg(attrs=[("k", "v" * 1025)])))
write("append_request", "bad_sender", lfield(1, msg(sender="al:ice")))
write("append_request", "second_message_bad", lfield(1, msg()) + lfield(1, msg(recipient="")))
write("append_request", "too_many", lfield(1, msg()) * 101)
write("append_request", "not_utf8_sender", lfield(1, vfield(1, 1) + lfield(2, b"\xff") + lfield(3, "bob")))

# list_request
write("list_request", "default", b"")
write("list_request", "valid", vfield(1, 50) + vfield(3, 1) + vfield(4, 1) + vfield(4, 3))
write("list_request", "cursor", vfield(1, 10) + lfield(2, seal(lgood)))
write("list_request", "page_size_too_big", vfield(1, 51))
write("list_request", "negative_since", vfield(3, -1))
write("list_request", "unknown_type", vfield(4, 0) + vfield(4, 9))
write("list_request", "garbage_cursor", lfield(2, "AAAA"))
write("list_request", "packed_types", lfield(4, varint(1) + varint(2) + varint(3)))
