#!/usr/bin/python3
"""Admin API tokens are checked before the request is read; requests are small.

A client not written in this project (Debian's python3-grpcio, raw bytes on
the wire, nothing generated from this repository) calls two real
fleetcanary-controller processes started with --admin_tokens:
  * "shared": the admin API on the agents' port (--grpc_max_message_bytes
    4 MiB for agent batches, --admin_max_message_bytes 1 MiB);
  * "split": the admin API on its own --admin_listen port (1 MiB).
Oracles: a request without a valid token is UNAUTHENTICATED even when its body
is over every size limit (had the body been read first, gRPC or the service
would have answered RESOURCE_EXHAUSTED); with a token, a body over 1 MiB is
RESOURCE_EXHAUSTED on both; server reflection needs a token; health does not.

Usage: admin_gate_test.py BINARY_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

BINARY_DIR = None
VIEWER = "viewer-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
ADMIN = "/fleetcanary.v1.CanaryAdmin/"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
HEALTH = "/grpc.health.v1.Health/Check"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def padded(size):
    """A valid protobuf message of about `size` bytes: one unknown field 1000
    (length-delimited), which every message parses and keeps."""
    return varint((1000 << 3) | 2) + varint(size) + b"x" * size


def identity(b):
    return b


class Controllers:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fc_admin_gate_")
        self.procs = []
        self.tokens = os.path.join(self.dir, "tokens.yaml")
        with open(self.tokens, "w") as out:
            out.write("tokens:\n"
                      "  - {name: grafana, role: viewer, token: %s}\n"
                      "  - {name: oncall, role: operator, token: %s}\n"
                      % (VIEWER, OPERATOR))
        os.chmod(self.tokens, 0o600)

    def start(self, name, extra):
        log = open(os.path.join(self.dir, name + ".log"), "w")
        p = subprocess.Popen(
            [os.path.join(BINARY_DIR, "controller/server/fleetcanary-controller"),
             "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
             "--data_dir=" + os.path.join(self.dir, name), "--insecure",
             "--admin_tokens=" + self.tokens] + extra,
            stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        self.procs.append(p)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("%s ended before listening; see %s.log" % (name, name))
            if line.startswith("listening "):
                return dict(kv.split("=", 1) for kv in line.split()[1:])
        raise RuntimeError("%s did not start" % name)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class AdminGateTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.ctl = Controllers()
        try:
            shared = cls.ctl.start("shared", ["--grpc_max_message_bytes=4194304"])
            split = cls.ctl.start("split", ["--admin_listen=127.0.0.1:0"])
        except Exception:
            cls.ctl.stop()
            raise
        cls.channels = {
            "shared": grpc.insecure_channel(shared["grpc"]),
            "split": grpc.insecure_channel(split["admin"]),
        }
        cls.agent_port = grpc.insecure_channel(split["grpc"])

    @classmethod
    def tearDownClass(cls):
        for c in cls.channels.values():
            c.close()
        cls.agent_port.close()
        cls.ctl.stop()

    def call(self, channel, method, body, token=None):
        md = [("authorization", "Bearer " + token)] if token else None
        try:
            channel.unary_unary(ADMIN + method, request_serializer=identity,
                                response_deserializer=identity)(
                body, metadata=md, timeout=30)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details()

    def test_no_token_is_refused_before_the_body_is_read(self):
        for name, channel in self.channels.items():
            # 6 MiB is over even the shared listener's 4 MiB limit: read
            # first, it would be RESOURCE_EXHAUSTED.
            for size in (1000, 2 << 20, 3 << 20, 6 << 20):
                with self.subTest(listener=name, size=size):
                    code, details = self.call(channel, "ApplySchedules", padded(size))
                    self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED, details)
                    self.assertIn("missing authorization", details)
                    code, details = self.call(channel, "ApplySchedules", padded(size),
                                              token="not-a-known-token-at-all")
                    self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED, details)
                    self.assertIn("unknown token", details)

    def test_viewer_cannot_apply_whatever_the_size(self):
        for name, channel in self.channels.items():
            with self.subTest(listener=name):
                code, details = self.call(channel, "ApplySchedules", padded(2 << 20),
                                          token=VIEWER)
                self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, details)

    def test_oversize_request_with_token_is_resource_exhausted(self):
        for name, channel in self.channels.items():
            with self.subTest(listener=name):
                code, details = self.call(channel, "ListAgents", padded(1 << 20),
                                          token=VIEWER)
                self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
                code, details = self.call(channel, "ApplySchedules", padded(3 << 20),
                                          token=OPERATOR)
                self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)

    def test_small_request_with_token_is_served(self):
        for name, channel in self.channels.items():
            with self.subTest(listener=name):
                code, details = self.call(channel, "ListAgents", padded(1000),
                                          token=VIEWER)
                self.assertEqual(code, grpc.StatusCode.OK, details)

    def reflect(self, channel, token=None):
        md = [("authorization", "Bearer " + token)] if token else None
        # ServerReflectionRequest{list_services: ""}: field 7, empty string.
        call = channel.stream_stream(REFLECTION, request_serializer=identity,
                                     response_deserializer=identity)
        try:
            responses = list(call(iter([b"\x3a\x00"]), metadata=md, timeout=30))
            return grpc.StatusCode.OK, b"".join(responses)
        except grpc.RpcError as e:
            return e.code(), e.details()

    def test_reflection_needs_a_token(self):
        for name, channel in list(self.channels.items()) + [("agent port", self.agent_port)]:
            with self.subTest(listener=name):
                code, details = self.reflect(channel)
                self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED, details)
        code, body = self.reflect(self.channels["shared"], token=VIEWER)
        self.assertEqual(code, grpc.StatusCode.OK)
        self.assertIn(b"fleetcanary.v1.CanaryAdmin", body)

    def test_health_answers_without_a_token(self):
        for name, channel in list(self.channels.items()) + [("agent port", self.agent_port)]:
            with self.subTest(listener=name):
                answer = channel.unary_unary(HEALTH, request_serializer=identity,
                                             response_deserializer=identity)(
                    b"", timeout=30)
                self.assertEqual(answer, b"\x08\x01")  # status: SERVING
                # Nothing about the admin service: only the whole server
                # ("") has a status.
                name = b"fleetcanary.v1.CanaryAdmin"
                with self.assertRaises(grpc.RpcError) as e:
                    channel.unary_unary(HEALTH, request_serializer=identity,
                                        response_deserializer=identity)(
                        b"\x0a" + bytes([len(name)]) + name, timeout=30)
                self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    BINARY_DIR = sys.argv.pop(1)
    unittest.main(verbosity=2)
