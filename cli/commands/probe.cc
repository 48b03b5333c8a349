#include "cli/commands/probe.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/commands/probe_direct.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

// Flag values as typed; converted and checked once the subcommand runs.
struct ProbeFlags {
  bool direct = false;
  std::string url_buffered;
  std::string url_stream;
  std::string url;
  std::string mode;
  std::string sizes = "2,1Ki,64Ki,1Mi";
  uint32_t count = 10;
  uint32_t concurrency = 8;
  double rate = 0;
  std::string auth = "none";
  std::string region;
  std::string timeout = "30s";
  std::string stall_limit = "10s";
  std::string connect_timeout = "5s";
  std::string max_body = "256Mi";
  std::string chunk;
  std::string chunk_gap;
  bool insecure = false;
  std::string ca_file;
  bool http2 = false;
  bool fresh_connections = false;
  double max_error_rate = 0;
  std::string output = "table";
  bool progress = false;
  std::string outcomes;
  uint64_t seed = 0;
};

absl::StatusOr<absl::Duration> Duration(const std::string& flag,
                                        const std::string& text) {
  absl::StatusOr<absl::Duration> d = ParseDuration(text);
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", text,
                     "\" is not a duration (examples: 250ms, 30s, 1m30s)"));
  }
  if (*d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": must be greater than zero"));
  }
  return *d;
}

absl::StatusOr<ProbeDirectOptions> ToOptions(const ProbeFlags& f) {
  ProbeDirectOptions o;
  if (!f.url.empty()) {
    if (!f.url_buffered.empty() || !f.url_stream.empty()) {
      return absl::InvalidArgumentError(
          "--url cannot be combined with --url-buffered/--url-stream");
    }
    const std::string mode = absl::AsciiStrToLower(f.mode);
    if (mode == "buffered") {
      o.urls.push_back({v1::BUFFERED, f.url});
    } else if (mode == "stream" || mode == "response_stream") {
      o.urls.push_back({v1::RESPONSE_STREAM, f.url});
    } else {
      return absl::InvalidArgumentError(
          "--url needs --mode buffered or --mode stream (which invoke mode "
          "the URL is configured with)");
    }
  } else {
    if (!f.mode.empty()) {
      return absl::InvalidArgumentError("--mode only goes with --url");
    }
    if (!f.url_buffered.empty())
      o.urls.push_back({v1::BUFFERED, f.url_buffered});
    if (!f.url_stream.empty()) {
      o.urls.push_back({v1::RESPONSE_STREAM, f.url_stream});
    }
  }
  if (o.urls.empty()) {
    return absl::InvalidArgumentError(
        "give the Function URLs to probe: --url-buffered URL and/or "
        "--url-stream URL (or --url URL --mode buffered|stream)");
  }
  absl::StatusOr<std::vector<uint64_t>> sizes = ParseBytesList(f.sizes);
  if (!sizes.ok() || sizes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sizes: \"", f.sizes,
                     "\" is not a comma-separated list of byte sizes (example: "
                     "2,1Ki,64Ki,1Mi)"));
  }
  o.sizes = *sizes;
  if (f.count < 1) return absl::InvalidArgumentError("--count: must be >= 1");
  if (f.concurrency < 1) {
    return absl::InvalidArgumentError("--concurrency: must be >= 1");
  }
  if (f.rate < 0) return absl::InvalidArgumentError("--rate: must be >= 0");
  o.count = f.count;
  o.concurrency = f.concurrency;
  o.rate = f.rate;
  const std::string auth = absl::AsciiStrToLower(f.auth);
  if (auth == "iam" || auth == "aws_iam") {
    o.auth = v1::AWS_IAM;
  } else if (auth == "none") {
    o.auth = v1::NONE;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth: \"", f.auth, "\" is not none or iam"));
  }
  o.region = f.region;
  absl::StatusOr<absl::Duration> d = Duration("timeout", f.timeout);
  if (!d.ok()) return d.status();
  SetDuration(*d, o.limits.mutable_timeout());
  d = Duration("stall-limit", f.stall_limit);
  if (!d.ok()) return d.status();
  SetDuration(*d, o.limits.mutable_stall_limit());
  d = Duration("connect-timeout", f.connect_timeout);
  if (!d.ok()) return d.status();
  SetDuration(*d, o.limits.mutable_connect_timeout());
  absl::StatusOr<uint64_t> max_body = ParseBytes(f.max_body);
  if (!max_body.ok() || *max_body == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-body: \"", f.max_body, "\" is not a byte size > 0"));
  }
  o.limits.set_max_body_bytes(*max_body);
  for (uint64_t size : o.sizes) {
    if (size > *max_body) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sizes: ", size, " is above --max-body ", *max_body));
    }
  }
  if (!f.chunk.empty()) {
    absl::StatusOr<uint64_t> chunk = ParseBytes(f.chunk);
    if (!chunk.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--chunk: \"", f.chunk, "\" is not a byte size"));
    }
    o.chunk_bytes = *chunk;
  }
  if (!f.chunk_gap.empty()) {
    d = Duration("chunk-gap", f.chunk_gap);
    if (!d.ok()) return d.status();
    o.chunk_gap = *d;
  }
  o.transport.set_http_version(f.http2 ? "2" : "1.1");
  o.transport.set_keep_alive(!f.fresh_connections);
  o.transport.set_insecure_skip_verify(f.insecure);
  o.transport.set_ca_file(f.ca_file);
  if (f.max_error_rate < 0 || f.max_error_rate > 1) {
    return absl::InvalidArgumentError(
        "--max-error-rate: must be between 0 and 1 (e.g. 0.001)");
  }
  o.max_error_rate = f.max_error_rate;
  if (f.output == "json") {
    o.json = true;
  } else if (f.output != "table") {
    return absl::InvalidArgumentError(
        absl::StrCat("--output: \"", f.output, "\" is not table or json"));
  }
  o.progress = f.progress;
  o.outcomes_path = f.outcomes;
  o.seed = f.seed;
  return o;
}

}  // namespace

void InstallProbeCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<ProbeFlags>();
  CLI::App* probe = app->add_subcommand(
      "probe", "Run ad-hoc canary probes and summarise them per mode x size");
  probe->add_flag("--direct", flags->direct,
                  "Probe from this machine with the agent's engine (no "
                  "controller)");
  probe->add_option("--url-buffered", flags->url_buffered,
                    "Function URL in BUFFERED invoke mode");
  probe->add_option("--url-stream", flags->url_stream,
                    "Function URL in RESPONSE_STREAM invoke mode");
  probe->add_option("--url", flags->url, "One Function URL (with --mode)");
  probe->add_option("--mode", flags->mode,
                    "Invoke mode of --url: buffered|stream");
  probe->add_option("--sizes", flags->sizes, "Body sizes, e.g. 2,1Ki,64Ki,1Mi")
      ->capture_default_str();
  probe->add_option("--count", flags->count, "Probes per mode x size")
      ->capture_default_str();
  probe
      ->add_option("--concurrency", flags->concurrency, "Most probes in flight")
      ->capture_default_str();
  probe
      ->add_option("--rate", flags->rate,
                   "Probes per second over the run (0 = unlimited)")
      ->capture_default_str();
  probe
      ->add_option("--auth", flags->auth,
                   "none|iam (SigV4 with AWS_* environment credentials)")
      ->capture_default_str();
  probe->add_option("--region", flags->region,
                    "Signing region when the host does not name one; label");
  probe->add_option("--timeout", flags->timeout, "Per-probe total timeout")
      ->capture_default_str();
  probe
      ->add_option("--stall-limit", flags->stall_limit,
                   "Longest time without a byte")
      ->capture_default_str();
  probe
      ->add_option("--connect-timeout", flags->connect_timeout,
                   "Connect (incl. TLS) timeout")
      ->capture_default_str();
  probe->add_option("--max-body", flags->max_body, "Largest body accepted")
      ->capture_default_str();
  probe->add_option("--chunk", flags->chunk,
                    "Streaming chunk size asked of the function (chunk=)");
  probe->add_option("--chunk-gap", flags->chunk_gap,
                    "Pause between streamed chunks (gap_ms=)");
  probe->add_flag("--insecure", flags->insecure,
                  "Skip TLS certificate verification (tests only)");
  probe->add_option("--ca-file", flags->ca_file, "CA bundle (PEM)");
  probe->add_flag("--http2", flags->http2, "Use HTTP/2");
  probe->add_flag("--fresh-connections", flags->fresh_connections,
                  "New connection (and TLS handshake) for every probe");
  probe
      ->add_option("--max-error-rate", flags->max_error_rate,
                   "Exit 2 when a mode x size error rate is above this")
      ->capture_default_str();
  probe->add_option("--output", flags->output, "table|json")
      ->capture_default_str();
  probe->add_flag("--progress", flags->progress,
                  "Show the progress bar even when stderr is not a terminal");
  probe->add_option("--outcomes", flags->outcomes,
                    "Also write every outcome to this file (JSON Lines)");
  probe->add_option("--seed", flags->seed,
                    "Seed for probe ids and bodies (0 = random)");
  probe->callback([flags, ctx, exit_code] {
    if (!flags->direct) {
      *ctx->err << "canaryctl probe: probing through the controller is not "
                   "available in this build; add --direct to probe from this "
                   "machine.\n";
      *exit_code = kExitUsage;
      return;
    }
    absl::StatusOr<ProbeDirectOptions> options = ToOptions(*flags);
    if (!options.ok()) {
      *ctx->err << "canaryctl probe: " << options.status().message() << "\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = RunProbeDirect(*options, ctx);
  });
}

}  // namespace cli
}  // namespace fleetcanary
