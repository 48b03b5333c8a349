#include "cli/commands/probe.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/commands/controller_client.h"
#include "cli/commands/probe_controller.h"
#include "cli/commands/probe_direct.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

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
  // Through the controller.
  ControllerFlags controller;
  std::string target;
  std::vector<std::string> regions;
  std::vector<std::string> modes;
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

// The URLs to probe: --url with --mode, or --url-buffered/--url-stream.
absl::Status SetUrls(const ProbeFlags& f, ProbeDirectOptions* o) {
  if (!f.url.empty()) {
    if (!f.url_buffered.empty() || !f.url_stream.empty()) {
      return absl::InvalidArgumentError(
          "--url cannot be combined with --url-buffered/--url-stream");
    }
    const std::string mode = absl::AsciiStrToLower(f.mode);
    if (mode == "buffered") {
      o->urls.push_back({v1::BUFFERED, f.url});
    } else if (mode == "stream" || mode == "response_stream") {
      o->urls.push_back({v1::RESPONSE_STREAM, f.url});
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
      o->urls.push_back({v1::BUFFERED, f.url_buffered});
    if (!f.url_stream.empty()) {
      o->urls.push_back({v1::RESPONSE_STREAM, f.url_stream});
    }
  }
  if (o->urls.empty()) {
    return absl::InvalidArgumentError(
        "give the Function URLs to probe: --url-buffered URL and/or "
        "--url-stream URL (or --url URL --mode buffered|stream)");
  }
  return absl::OkStatus();
}

// --sizes, --count, --concurrency, --rate and --auth.
absl::Status SetLoad(const ProbeFlags& f, ProbeDirectOptions* o) {
  absl::StatusOr<std::vector<uint64_t>> sizes = ParseBytesList(f.sizes);
  if (!sizes.ok() || sizes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sizes: \"", f.sizes,
                     "\" is not a comma-separated list of byte sizes (example: "
                     "2,1Ki,64Ki,1Mi)"));
  }
  o->sizes = *sizes;
  if (f.count < 1) return absl::InvalidArgumentError("--count: must be >= 1");
  if (f.concurrency < 1) {
    return absl::InvalidArgumentError("--concurrency: must be >= 1");
  }
  if (f.rate < 0) return absl::InvalidArgumentError("--rate: must be >= 0");
  o->count = f.count;
  o->concurrency = f.concurrency;
  o->rate = f.rate;
  const std::string auth = absl::AsciiStrToLower(f.auth);
  if (auth == "iam" || auth == "aws_iam") {
    o->auth = v1::AWS_IAM;
  } else if (auth == "none") {
    o->auth = v1::NONE;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth: \"", f.auth, "\" is not none or iam"));
  }
  return absl::OkStatus();
}

// The timeouts, --max-body (which every size must fit) and the streaming
// chunk options.
absl::Status SetLimits(const ProbeFlags& f, ProbeDirectOptions* o) {
  absl::StatusOr<absl::Duration> d = Duration("timeout", f.timeout);
  if (!d.ok()) return d.status();
  *o->limits.mutable_timeout() = DurationToProto(*d);
  d = Duration("stall-limit", f.stall_limit);
  if (!d.ok()) return d.status();
  *o->limits.mutable_stall_limit() = DurationToProto(*d);
  d = Duration("connect-timeout", f.connect_timeout);
  if (!d.ok()) return d.status();
  *o->limits.mutable_connect_timeout() = DurationToProto(*d);
  absl::StatusOr<uint64_t> max_body = ParseBytes(f.max_body);
  if (!max_body.ok() || *max_body == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-body: \"", f.max_body, "\" is not a byte size > 0"));
  }
  o->limits.set_max_body_bytes(*max_body);
  for (uint64_t size : o->sizes) {
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
    o->chunk_bytes = *chunk;
  }
  if (!f.chunk_gap.empty()) {
    d = Duration("chunk-gap", f.chunk_gap);
    if (!d.ok()) return d.status();
    o->chunk_gap = *d;
  }
  return absl::OkStatus();
}

// Transport, --max-error-rate and what to print.
absl::Status SetTransportAndOutput(const ProbeFlags& f, ProbeDirectOptions* o) {
  o->transport.set_http_version(f.http2 ? "2" : "1.1");
  o->transport.set_keep_alive(!f.fresh_connections);
  o->transport.set_insecure_skip_verify(f.insecure);
  o->transport.set_ca_file(f.ca_file);
  if (f.max_error_rate < 0 || f.max_error_rate > 1) {
    return absl::InvalidArgumentError(
        "--max-error-rate: must be between 0 and 1 (e.g. 0.001)");
  }
  o->max_error_rate = f.max_error_rate;
  if (f.output == "json") {
    o->json = true;
  } else if (f.output != "table") {
    return absl::InvalidArgumentError(
        absl::StrCat("--output: \"", f.output, "\" is not table or json"));
  }
  o->progress = f.progress;
  o->outcomes_path = f.outcomes;
  o->seed = f.seed;
  return absl::OkStatus();
}

absl::StatusOr<ProbeDirectOptions> ToOptions(const ProbeFlags& f) {
  ProbeDirectOptions o;
  o.region = f.region;
  if (absl::Status s = SetUrls(f, &o); !s.ok()) return s;
  if (absl::Status s = SetLoad(f, &o); !s.ok()) return s;
  if (absl::Status s = SetLimits(f, &o); !s.ok()) return s;
  if (absl::Status s = SetTransportAndOutput(f, &o); !s.ok()) return s;
  return o;
}

// Through the controller the target's configuration decides these.
absl::Status CheckNoDirectOnlyFlags(const CLI::App& probe) {
  for (const char* direct_only :
       {"--rate", "--auth", "--chunk", "--chunk-gap", "--seed"}) {
    if (probe.count(direct_only) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(direct_only,
                       " only goes with --direct (through the controller, "
                       "the target's configuration decides)"));
    }
  }
  return absl::OkStatus();
}

// What to probe: --target, or explicit URLs checked as for --direct.
absl::Status SetRequestTarget(const ProbeFlags& f, v1::RunProbeRequest* r) {
  if (!f.url.empty() && f.modes.size() > 1) {
    return absl::InvalidArgumentError(
        "--mode: one invoke mode with --url (the mode the URL is "
        "configured with)");
  }
  if (!f.target.empty()) {
    if (!f.url.empty() || !f.url_buffered.empty() || !f.url_stream.empty()) {
      return absl::InvalidArgumentError(
          "--target cannot be combined with --url/--url-buffered/--url-stream");
    }
    r->set_target(f.target);
    return absl::OkStatus();
  }
  // Explicit URLs: the same checks as --direct.
  ProbeFlags copy = f;
  copy.rate = 0;
  absl::StatusOr<ProbeDirectOptions> direct = ToOptions(copy);
  if (!direct.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        direct.status().message(),
        " — or --target NAME for a target registered on the controller"));
  }
  for (const auto& [mode, url] : direct->urls) {
    v1::FunctionUrl* u = r->add_urls();
    u->set_mode(mode);
    u->set_url(url);
  }
  return absl::OkStatus();
}

// --region and --mode lists.
absl::Status SetRegionsAndModes(const ProbeFlags& f, v1::RunProbeRequest* r) {
  for (const std::string& region : f.regions) {
    for (absl::string_view part :
         absl::StrSplit(region, ',', absl::SkipEmpty())) {
      r->add_regions(std::string(part));
    }
  }
  for (const std::string& mode_list : f.modes) {
    for (absl::string_view part :
         absl::StrSplit(mode_list, ',', absl::SkipEmpty())) {
      const std::string m = absl::AsciiStrToLower(std::string(part));
      if (m == "buffered") {
        r->add_modes(v1::BUFFERED);
      } else if (m == "stream" || m == "response_stream") {
        r->add_modes(v1::RESPONSE_STREAM);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--modes: \"", std::string(part), "\" is not buffered or stream"));
      }
    }
  }
  return absl::OkStatus();
}

// Sizes, count, limits, transport and output: checked like --direct.
absl::Status SetRequestLoad(const ProbeFlags& f, ProbeControllerOptions* o) {
  ProbeFlags copy = f;
  if (copy.url.empty() && copy.url_buffered.empty() &&
      copy.url_stream.empty()) {
    copy.url_buffered = "http://placeholder.invalid/";
  }
  copy.rate = 0;
  absl::StatusOr<ProbeDirectOptions> checked = ToOptions(copy);
  if (!checked.ok()) return checked.status();
  v1::RunProbeRequest& r = o->request;
  for (uint64_t size : checked->sizes) r.add_sizes(size);
  if (checked->count > 10000) {
    return absl::InvalidArgumentError(
        "--count: at most 10000 per region x "
        "mode x size through the controller");
  }
  r.set_count(checked->count);
  r.set_concurrency(checked->concurrency);
  *r.mutable_limits() = checked->limits;
  *r.mutable_transport() = checked->transport;
  o->max_error_rate = checked->max_error_rate;
  o->json = checked->json;
  o->progress = checked->progress;
  o->outcomes_path = checked->outcomes_path;
  return absl::OkStatus();
}

// The RunProbe request of a probe through the controller.
absl::StatusOr<ProbeControllerOptions> ToRequest(const ProbeFlags& f,
                                                 const CLI::App& probe) {
  if (absl::Status s = CheckNoDirectOnlyFlags(probe); !s.ok()) return s;
  ProbeControllerOptions o;
  if (absl::Status s = SetRequestTarget(f, &o.request); !s.ok()) return s;
  if (absl::Status s = SetRegionsAndModes(f, &o.request); !s.ok()) return s;
  if (absl::Status s = SetRequestLoad(f, &o); !s.ok()) return s;
  return o;
}

// Splits comma lists (`--region a,b --region c`) and maps the list flags
// onto what --direct and --url take: one region, one mode.
absl::StatusOr<ProbeFlags> Normalize(const ProbeFlags& in) {
  ProbeFlags f = in;
  auto split = [](const std::vector<std::string>& values) {
    std::vector<std::string> out;
    for (const std::string& v : values) {
      for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        out.emplace_back(absl::StripAsciiWhitespace(part));
      }
    }
    return out;
  };
  f.regions = split(in.regions);
  f.modes = split(in.modes);
  if (!f.url.empty()) {
    if (f.modes.size() != 1) {
      return absl::InvalidArgumentError(
          "--url needs --mode buffered or --mode stream (which invoke mode "
          "the URL is configured with)");
    }
    f.mode = f.modes[0];
  }
  if (f.direct) {
    if (f.regions.size() > 1) {
      return absl::InvalidArgumentError(
          "--region: one region with --direct (the signing region and label)");
    }
    f.region = f.regions.empty() ? "" : f.regions[0];
    if (f.url.empty() && !f.modes.empty()) {
      return absl::InvalidArgumentError(
          "--mode only goes with --url when probing --direct (--url-buffered "
          "and --url-stream name their modes)");
    }
  }
  return f;
}

// The flags of probes from this machine (and those shared with probes
// through the controller).
void AddDirectFlags(CLI::App* probe, ProbeFlags* flags) {
  probe->add_flag("--direct", flags->direct,
                  "Probe from this machine with the agent's engine (no "
                  "controller)");
  probe->add_option("--url-buffered", flags->url_buffered,
                    "Function URL in BUFFERED invoke mode");
  probe->add_option("--url-stream", flags->url_stream,
                    "Function URL in RESPONSE_STREAM invoke mode");
  probe->add_option("--url", flags->url, "One Function URL (with --mode)");
  probe->add_option("--mode", flags->modes,
                    "Invoke modes, comma-separated: buffered,stream (default "
                    "both); with --url the one mode the URL is configured "
                    "with");
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
                   "none|iam: iam signs with SigV4 using the AWS SDK "
                   "credential chain (environment, web identity, "
                   "AWS_PROFILE's files, container, IMDSv2; docs/aws.md)")
      ->capture_default_str();
  probe->add_option("--region", flags->regions,
                    "Regions, comma-separated (default: every region of the "
                    "target; for URLs every region with a live agent); with "
                    "--direct one region: the signing region when the host "
                    "does not name one, and the table's label");
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
  probe->add_flag("--tls-skip-verify", flags->insecure,
                  "Skip TLS certificate verification of the probed URLs "
                  "(tests only)");
  probe->add_option("--ca-file", flags->ca_file, "CA bundle (PEM)");
  probe->add_flag("--http2", flags->http2, "Use HTTP/2");
  probe->add_flag("--fresh-connections", flags->fresh_connections,
                  "New connection (and TLS handshake) for every probe");
  probe
      ->add_option("--max-error-rate", flags->max_error_rate,
                   "Exit 2 when a mode x size error rate is above this")
      ->capture_default_str();
  probe->add_option("--output,-o", flags->output, "table|json")
      ->capture_default_str();
  probe->add_flag("--progress", flags->progress,
                  "Show the progress bar even when stderr is not a terminal");
  probe->add_option("--outcomes", flags->outcomes,
                    "Also write every outcome to this file (JSON Lines)");
  probe->add_option("--seed", flags->seed,
                    "Seed for probe ids and bodies (0 = random)");
}

// The flags of probes through the controller.
void AddControllerProbeFlags(CLI::App* probe, ProbeFlags* flags) {
  probe
      ->add_option("--target", flags->target,
                   "A target registered on the controller (instead of "
                   "URLs)")
      ->group("Through the controller");
  // Earlier spellings, kept working but no longer listed.
  probe->add_option("--regions", flags->regions, "Same as --region")->group("");
  probe->add_option("--modes", flags->modes, "Same as --mode")->group("");
  AddControllerFlags(probe, &flags->controller);
  probe->footer(
      "Without --direct the probes run on the fleet's agents: the controller "
      "splits --count per region x mode x size over each region's live "
      "agents and streams their results back. Ctrl-C cancels them.");
}

// Runs `canaryctl probe` with the parsed flags; sets *exit_code.
void RunProbeCommand(const ProbeFlags& flags, const CLI::App& probe,
                     CliContext* ctx, int* exit_code) {
  absl::StatusOr<ProbeFlags> normalized = Normalize(flags);
  if (!normalized.ok()) {
    *ctx->err << "canaryctl probe: " << normalized.status().message() << "\n";
    *exit_code = kExitUsage;
    return;
  }
  const ProbeFlags& f = *normalized;
  if (!f.direct) {
    absl::StatusOr<ProbeControllerOptions> request = ToRequest(f, probe);
    if (!request.ok()) {
      *ctx->err << "canaryctl probe: " << request.status().message() << "\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = RunProbeController(flags.controller, *request, ctx);
    return;
  }
  for (const char* controller_only :
       {"--target", "--controller", "--token-file", "--ca", "--insecure"}) {
    if (probe.count(controller_only) > 0) {
      *ctx->err << "canaryctl probe: " << controller_only
                << " goes with probes through the controller, not with "
                   "--direct\n";
      *exit_code = kExitUsage;
      return;
    }
  }
  absl::StatusOr<ProbeDirectOptions> options = ToOptions(f);
  if (!options.ok()) {
    *ctx->err << "canaryctl probe: " << options.status().message() << "\n";
    *exit_code = kExitUsage;
    return;
  }
  *exit_code = RunProbeDirect(*options, ctx);
}

}  // namespace

void InstallProbeCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<ProbeFlags>();
  CLI::App* probe = app->add_subcommand(
      "probe",
      "Run ad-hoc canary probes on the fleet's agents (or --direct from "
      "here) and summarise them per region x mode x size");
  AddDirectFlags(probe, flags.get());
  AddControllerProbeFlags(probe, flags.get());
  probe->callback([flags, ctx, exit_code, probe] {
    RunProbeCommand(*flags, *probe, ctx, exit_code);
  });
}

}  // namespace cli
}  // namespace fleetcanary
