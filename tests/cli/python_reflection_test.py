#!/usr/bin/python3
"""The admin API from a gRPC client not written in this project.

Debian's python3-grpcio and python3-protobuf, and nothing generated from this
repository: the client asks the controller's server reflection
(grpc.reflection.v1alpha) for the CanaryAdmin service, builds a descriptor
pool from the FileDescriptorProtos it returns, makes message classes with
google.protobuf.message_factory, and calls ListAgents and RunProbe against a
real fleet (function-url-emulator, fleetcanary-controller, one
fleetcanary-agent in each of two regions, all spawned here on loopback).

The reflection messages themselves are described by hand below (the
descriptor of grpc/reflection/v1alpha/reflection.proto, the fields this test
uses), so no protoc plugin is needed.

Usage: python_reflection_test.py BINARY_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

BINARY_DIR = None
SERVICE = "fleetcanary.v1.CanaryAdmin"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def message_class(pool, full_name):
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def reflection_pool():
    """A pool holding the reflection request/response messages."""
    f = descriptor_pb2.FileDescriptorProto()
    f.name = "handmade/reflection_v1alpha.proto"
    f.package = "grpc.reflection.v1alpha"
    f.syntax = "proto3"
    T = descriptor_pb2.FieldDescriptorProto
    OPT = T.LABEL_OPTIONAL
    REP = T.LABEL_REPEATED

    def msg(name, fields, oneof=None):
        m = f.message_type.add()
        m.name = name
        if oneof:
            m.oneof_decl.add().name = oneof
        for number, fname, ftype, label, type_name, in_oneof in fields:
            fd = m.field.add()
            fd.name, fd.number, fd.type, fd.label = fname, number, ftype, label
            if type_name:
                fd.type_name = ".grpc.reflection.v1alpha." + type_name
            if in_oneof:
                fd.oneof_index = 0

    S, M, B, I = T.TYPE_STRING, T.TYPE_MESSAGE, T.TYPE_BYTES, T.TYPE_INT32
    msg("ServerReflectionRequest", [
        (1, "host", S, OPT, None, False),
        (3, "file_by_filename", S, OPT, None, True),
        (4, "file_containing_symbol", S, OPT, None, True),
        (7, "list_services", S, OPT, None, True),
    ], oneof="message_request")
    msg("FileDescriptorResponse", [(1, "file_descriptor_proto", B, REP, None, False)])
    msg("ServiceResponse", [(1, "name", S, OPT, None, False)])
    msg("ListServiceResponse", [(1, "service", M, REP, "ServiceResponse", False)])
    msg("ErrorResponse", [(1, "error_code", I, OPT, None, False),
                          (2, "error_message", S, OPT, None, False)])
    msg("ServerReflectionResponse", [
        (1, "valid_host", S, OPT, None, False),
        (2, "original_request", M, OPT, "ServerReflectionRequest", False),
        (4, "file_descriptor_response", M, OPT, "FileDescriptorResponse", True),
        (6, "list_services_response", M, OPT, "ListServiceResponse", True),
        (7, "error_response", M, OPT, "ErrorResponse", True),
    ], oneof="message_response")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return pool


class Fleet:
    """Emulator, controller and two agents on loopback, in a temp dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fc_reflection_")
        self.procs = []

    def spawn(self, name, args):
        with open(os.path.join(self.dir, name + ".log"), "w") as log:
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append(p)
        return p

    def read_until(self, proc, prefix, timeout=120):
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("process ended before printing %r" % prefix)
            lines.append(line.strip())
            if line.startswith(prefix):
                return lines
        raise RuntimeError("no %r within %ss" % (prefix, timeout))

    def start(self):
        b = BINARY_DIR
        emu = self.spawn("emulator", [
            os.path.join(b, "emulator/function-url-emulator"),
            "--regions=us-east-1,eu-west-1"])
        urls = {}
        for line in self.read_until(emu, "ready"):
            if line.startswith("url "):
                f = dict(kv.split("=", 1) for kv in line.split()[1:])
                urls[(f["region"], f["mode"])] = f["url"]
        fleet = ["targets:", "- name: canary", "  regions:"]
        for region in ("us-east-1", "eu-west-1"):
            fleet += ["  - region: " + region, "    urls:"]
            for mode in ("BUFFERED", "RESPONSE_STREAM"):
                fleet.append("    - {mode: %s, url: '%s'}" % (mode, urls[(region, mode)]))
        fleet_file = os.path.join(self.dir, "fleet.yaml")
        with open(fleet_file, "w") as out:
            out.write("\n".join(fleet) + "\n")
        ctl = self.spawn("controller", [
            os.path.join(b, "controller/server/fleetcanary-controller"),
            "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
            "--data_dir=" + os.path.join(self.dir, "controller"),
            "--fleet=" + fleet_file, "--heartbeat_interval=1s", "--insecure",
            "--target_allow_loopback"])
        line = self.read_until(ctl, "listening ")[-1]
        self.address = dict(kv.split("=", 1) for kv in line.split()[1:])["grpc"]
        for agent, region in (("use1", "us-east-1"), ("euw1", "eu-west-1")):
            self.spawn(agent, [
                os.path.join(b, "agent/fleetcanary-agent"),
                "--agent_id=" + agent, "--region=" + region,
                "--controller=" + self.address,
                "--data_dir=" + os.path.join(self.dir, agent),
                "--http_listen=off", "--heartbeat_interval=1s",
                "--reconnect_min=50ms", "--reconnect_max=300ms",
                "--insecure", "--target_allow_loopback"])

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


class ReflectionClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet()
        try:
            cls.fleet.start()
        except Exception:
            cls.fleet.stop()
            raise
        cls.channel = grpc.insecure_channel(cls.fleet.address)
        rpool = reflection_pool()
        Req = message_class(rpool, "grpc.reflection.v1alpha.ServerReflectionRequest")
        Resp = message_class(rpool, "grpc.reflection.v1alpha.ServerReflectionResponse")
        info = cls.channel.stream_stream(
            REFLECTION, request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString)

        def ask(**kw):
            responses = list(info(iter([Req(**kw)]), timeout=60))
            assert len(responses) == 1, responses
            r = responses[0]
            assert not r.HasField("error_response"), r.error_response
            return r

        cls.services = [s.name for s in ask(list_services="").list_services_response.service]
        files = ask(file_containing_symbol=SERVICE).file_descriptor_response.file_descriptor_proto
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in files]
        # Dependencies first: add what has all its dependencies, repeat.
        pool = descriptor_pool.DescriptorPool()
        added = set()
        pending = {p.name: p for p in protos}
        while pending:
            ready = [p for p in pending.values() if all(d in added for d in p.dependency)]
            if not ready:
                # Ask for the missing dependencies by file name.
                missing = {d for p in pending.values() for d in p.dependency
                           if d not in added and d not in pending}
                assert missing, "dependency cycle in %s" % list(pending)
                for name in missing:
                    for b in ask(file_by_filename=name).file_descriptor_response.file_descriptor_proto:
                        p = descriptor_pb2.FileDescriptorProto.FromString(b)
                        if p.name not in added:
                            pending[p.name] = p
                continue
            for p in ready:
                pool.Add(p)
                added.add(p.name)
                del pending[p.name]
        cls.pool = pool
        cls.service = pool.FindServiceByName(SERVICE)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.fleet.stop()

    def method(self, name, streaming=False):
        m = self.service.methods_by_name[name]
        In = message_class(self.pool, m.input_type.full_name)
        Out = message_class(self.pool, m.output_type.full_name)
        path = "/%s/%s" % (SERVICE, name)
        call = (self.channel.unary_stream if streaming else self.channel.unary_unary)(
            path, request_serializer=In.SerializeToString,
            response_deserializer=Out.FromString)
        return In, call

    def test_service_is_discovered(self):
        self.assertIn(SERVICE, self.services)
        self.assertIn("grpc.health.v1.Health", self.services)
        self.assertEqual(
            sorted(self.service.methods_by_name),
            sorted(["RunProbe", "ApplySchedules", "ListSchedules", "DeleteSchedule",
                    "ListAgents", "GetVerdicts", "WatchVerdicts", "Analyze",
                    "Report"]))

    def live_agents(self):
        In, list_agents = self.method("ListAgents")
        live = self.pool.FindEnumTypeByName("fleetcanary.v1.AgentState").values_by_name["LIVE"].number
        reply = list_agents(In(), timeout=60)
        return sorted((a.agent_id, a.region) for a in reply.agents if a.state == live)

    def wait_for_agents(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(self.live_agents()) == 2:
                return
            time.sleep(0.05)
        self.fail("agents did not connect: %s" % self.live_agents())

    def test_list_agents(self):
        self.wait_for_agents()
        self.assertEqual(self.live_agents(), [("euw1", "eu-west-1"), ("use1", "us-east-1")])

    def test_run_probe(self):
        self.wait_for_agents()
        In, run_probe = self.method("RunProbe", streaming=True)
        request = In(target="canary", sizes=[2, 1024], count=5, concurrency=4,
                     stream_outcomes=True)
        events = list(run_probe(request, timeout=120))
        kinds = [e.WhichOneof("event") for e in events]
        self.assertEqual(kinds.count("dispatched"), 2)
        self.assertEqual(kinds.count("outcome"), 2 * 2 * 2 * 5)
        self.assertEqual(kinds.count("region_summary"), 2 * 2 * 2)
        self.assertEqual(kinds[-1], "done")
        done = events[-1].done
        self.assertEqual(done.total_probes, 40)
        self.assertEqual(len(done.summaries), 8)
        for s in done.summaries:
            self.assertEqual(s.probes, 5)
            self.assertEqual(dict(s.by_class), {"OK": 5})
        regions = {e.outcome.region for e in events if e.WhichOneof("event") == "outcome"}
        self.assertEqual(regions, {"us-east-1", "eu-west-1"})

    def test_bad_request_names_the_field(self):
        In, run_probe = self.method("RunProbe", streaming=True)
        with self.assertRaises(grpc.RpcError) as ctx:
            list(run_probe(In(target="canary", sizes=[2]), timeout=60))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("count", ctx.exception.details())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    BINARY_DIR = sys.argv.pop(1)
    unittest.main(verbosity=2)
